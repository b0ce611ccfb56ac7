"""GenEval-format prompts for the mini world, their paraphrases, satisfying scenes and training captions.

Metadata lines follow GenEval's format and phrasing exactly (djghosh13/geneval prompts/create_prompts.py):
``{"tag", "include": [{"class", "count", "color"?, "position"?: [relation, group_index]}], "exclude"?, "prompt"}``,
"a"/"an" by the first letter, plurals with "es" after a final "s", counting 2-4 with an exclude of count + 1,
position prompts "a photo of A <relation> B" whose include lists B first and A with ``position: [relation, 0]``,
colour prompts never repeat a colour within a prompt. The mini world's classes are its shapes.

The vocabulary is small, so each task's prompt space is enumerated; ``geneval_prompts`` draws from it
with a prompt seed (tasks with fewer distinct prompts than requested repeat them in balanced cycles).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, Iterable

import numpy as np

from craft_bench.mini.scenes import COLORS, SHAPES, Obj, Scene, place, random_scene

TASKS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
RELATIONS = ("left of", "right of", "above", "below")
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
COLOR_NAMES = tuple(COLORS)
MAX_COUNT = 4
PREFIX = "a photo of "
# How far past GenEval's 0.5 normalised-offset boundary a generated position scene must lie, so that the
# detector's pixel boxes (which differ slightly from the nominal ones) still give the same verdict.
POSITION_MARGIN = 0.7


def with_article(name: str) -> str:
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def plural(name: str) -> str:
    return f"{name}es" if name.endswith("s") else f"{name}s"


# --------------------------------------------------------------------------- the prompt space


def geneval_phrase(tag: str, include: list[dict]) -> str:
    """The prompt GenEval writes for a task's include clauses (reproduces every official prompt)."""
    if tag == "single_object":
        return PREFIX + with_article(include[0]["class"])
    if tag == "two_object":
        return f"{PREFIX}{with_article(include[0]['class'])} and {with_article(include[1]['class'])}"
    if tag == "counting":
        return f"{PREFIX}{NUMBERS[include[0]['count']]} {plural(include[0]['class'])}"
    if tag == "colors":
        return f"{PREFIX}{with_article(include[0]['color'])} {include[0]['class']}"
    if tag == "position":
        return (
            f"{PREFIX}{with_article(include[1]['class'])} {include[1]['position'][0]} "
            f"{with_article(include[0]['class'])}"
        )
    if tag == "color_attr":
        a, b = include
        return f"{PREFIX}{with_article(a['color'])} {a['class']} and {with_article(b['color'])} {b['class']}"
    raise ValueError(f"unknown GenEval task '{tag}' (known: {', '.join(TASKS)})")


def _line(tag: str, include: list[dict], exclude: list[dict] | None = None) -> dict:
    line: dict[str, Any] = {"tag": tag, "include": include}
    if exclude is not None:
        line["exclude"] = exclude
    line["prompt"] = geneval_phrase(tag, include)
    return line


@lru_cache(maxsize=None)
def _pool_json(task: str) -> tuple[str, ...]:
    if task == "single_object":
        lines = [_line(task, [{"class": s, "count": 1}]) for s in SHAPES]
    elif task == "two_object":
        lines = [
            _line(task, [{"class": a, "count": 1}, {"class": b, "count": 1}]) for a in SHAPES for b in SHAPES if a != b
        ]
    elif task == "counting":
        lines = [
            _line(task, [{"class": s, "count": n}], exclude=[{"class": s, "count": n + 1}])
            for s in SHAPES
            for n in range(2, MAX_COUNT + 1)
        ]
    elif task == "colors":
        lines = [_line(task, [{"class": s, "count": 1, "color": c}]) for s in SHAPES for c in COLOR_NAMES]
    elif task == "position":
        lines = [
            _line(task, [{"class": b, "count": 1}, {"class": a, "count": 1, "position": [rel, 0]}])
            for a in SHAPES
            for b in SHAPES
            if a != b
            for rel in RELATIONS
        ]
    elif task == "color_attr":
        lines = [
            _line(task, [{"class": a, "count": 1, "color": ca}, {"class": b, "count": 1, "color": cb}])
            for a in SHAPES
            for b in SHAPES
            if a != b
            for ca in COLOR_NAMES
            for cb in COLOR_NAMES
            if ca != cb
        ]
    else:
        raise ValueError(f"unknown GenEval task '{task}' (known: {', '.join(TASKS)})")
    return tuple(json.dumps(line) for line in lines)


def task_pool(task: str) -> list[dict]:
    """Every distinct metadata line of a task, in a fixed order."""
    return [json.loads(s) for s in _pool_json(task)]


@lru_cache(maxsize=None)
def _by_prompt() -> dict[str, str]:
    return {json.loads(s)["prompt"]: s for task in TASKS for s in _pool_json(task)}


def parse_prompt(prompt: str) -> dict | None:
    """The metadata line of a mini GenEval prompt, or None for any other text."""
    s = _by_prompt().get(prompt.strip())
    return json.loads(s) if s is not None else None


def geneval_prompts(
    n_per_task: int,
    seed: int,
    exclude: Iterable[str] | None = None,
    tasks: Iterable[str] = TASKS,
) -> list[dict]:
    """``n_per_task`` metadata lines per task, drawn with prompt seed ``seed``.

    Prompts listed in ``exclude`` (e.g. an evaluation set, when drawing training prompts) are never drawn;
    a task whose whole space is excluded contributes no lines. A task with fewer distinct prompts than
    ``n_per_task`` (single_object has 5) repeats them in shuffled cycles, so every task keeps its weight.
    """
    if n_per_task < 0:
        raise ValueError("n_per_task must be >= 0")
    banned = set(exclude or ())
    out: list[dict] = []
    for t_index, task in enumerate(TASKS):
        if task not in set(tasks):
            continue
        pool = [s for s in _pool_json(task) if json.loads(s)["prompt"] not in banned]
        if not pool or n_per_task == 0:
            continue
        rng = np.random.default_rng([int(seed), t_index])  # per task: a task's draw ignores the others
        chosen: list[str] = []
        while len(chosen) < n_per_task:
            chosen.extend(pool[i] for i in rng.permutation(len(pool)))
        out.extend(json.loads(s) for s in chosen[:n_per_task])
    return out


def read_metadata(path) -> list[dict]:
    """Read a GenEval ``evaluation_metadata.jsonl`` (official or mini): one JSON object per non-empty line."""
    lines = []
    with open(path, encoding="utf-8") as fh:
        for number, raw in enumerate(fh, 1):
            raw = raw.strip()
            if not raw:
                continue
            try:
                line = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"line {number} is not JSON ({exc.msg} at column {exc.colno}); one JSON object per line"
                ) from None
            validate_metadata(line, where=f"line {number}")
            lines.append(line)
    return lines


def validate_metadata(line: dict, where: str = "metadata") -> None:
    """Raise ValueError unless ``line`` has GenEval's fields and types."""
    if not isinstance(line, dict) or not isinstance(line.get("tag"), str) or not isinstance(line.get("prompt"), str):
        raise ValueError(f"{where}: a GenEval metadata line needs string 'tag' and 'prompt'")
    if not line["prompt"].strip():
        raise ValueError(f"{where}: the prompt is empty; give every line a prompt")
    include = line.get("include", [])
    if not isinstance(include, list):
        raise ValueError(f"{where}: 'include' must be a list")
    for i, req in enumerate(include + list(line.get("exclude", []))):
        if not isinstance(req, dict) or not isinstance(req.get("class"), str) or not isinstance(req.get("count"), int):
            raise ValueError(f"{where}: every clause needs a string 'class' and an integer 'count'")
        if "position" in req:
            pos = req["position"]
            if not (
                isinstance(pos, (list, tuple)) and len(pos) == 2 and pos[0] in RELATIONS and isinstance(pos[1], int)
            ):
                raise ValueError(f"{where}: 'position' must be [relation, group_index] with relation in {RELATIONS}")
            if not 0 <= pos[1] < i:
                raise ValueError(f"{where}: 'position' must refer to an earlier include clause")


# --------------------------------------------------------------------------- scenes that satisfy a line


def relation_offset(box_a, box_b) -> tuple[float, float] | None:
    """GenEval's normalised, size-corrected offset of A from B (None when they are too close to tell)."""
    from craft_bench.suites.geneval_rules import normalized_offset

    return normalized_offset(box_a, box_b)


def _relation_holds(a: Obj, b: Obj, rel: str, margin: float) -> bool:
    off = relation_offset(a.box, b.box)
    if off is None:
        return False
    dx, dy = off
    return {"left of": dx < -margin, "right of": dx > margin, "above": dy < -margin, "below": dy > margin}[rel]


def scene_for(meta: dict, rng: np.random.Generator) -> Scene:
    """A scene that satisfies a metadata line: exactly the included objects, in the required colours and
    relation (uncoloured objects get random colours)."""
    specs: list[tuple[str, str]] = []
    groups: list[list[int]] = []
    for req in meta.get("include", []):
        if req["class"] not in SHAPES or req.get("color", "red") not in COLORS:
            raise ValueError(f"'{meta.get('prompt')}' is not a mini-world prompt (classes: {', '.join(SHAPES)})")
        idx = []
        for _ in range(int(req["count"])):
            color = req.get("color") or COLOR_NAMES[int(rng.integers(len(COLOR_NAMES)))]
            idx.append(len(specs))
            specs.append((req["class"], color))
        groups.append(idx)
    if len(specs) > 4:
        raise ValueError(f"the mini world holds at most 4 objects; '{meta.get('prompt')}' needs {len(specs)}")
    relations = [
        (groups[i], groups[req["position"][1]], req["position"][0])
        for i, req in enumerate(meta.get("include", []))
        if "position" in req
    ]

    def accept(objs: tuple[Obj, ...]) -> bool:
        return all(
            _relation_holds(objs[a], objs[b], rel, POSITION_MARGIN) for ga, gb, rel in relations for a in ga for b in gb
        )

    return Scene(place(specs, rng, accept=accept if relations else None, tries=400))


# --------------------------------------------------------------------------- captions and paraphrases

FRAMES = (
    "a photo of {}",
    "{}",
    "an image of {}",
    "a picture of {}",
    "a drawing of {}",
    "a simple illustration of {}",
    "{} on a gray background",
    "a rendering of {}",
    "a scene with {}",
    "a flat graphic showing {}",
)

_REL_VARIANTS = {
    "left of": ("{a} left of {b}", "{a} to the left of {b}", "{b} with {a} on its left"),
    "right of": ("{a} right of {b}", "{a} to the right of {b}", "{b} with {a} on its right"),
    "above": ("{a} above {b}", "{a} placed above {b}", "{b} with {a} above it"),
    "below": ("{a} below {b}", "{a} beneath {b}", "{b} with {a} below it"),
}


def _noun(req: dict) -> str:
    return with_article(f"{req['color']} {req['class']}" if req.get("color") else req["class"])


def _cores(meta: dict) -> list[str]:
    """Noun-phrase variants that say the same as the line's prompt (without the 'a photo of' frame)."""
    tag, inc = meta["tag"], meta["include"]
    if tag == "single_object":
        s = inc[0]["class"]
        return [with_article(s), f"one {s}", f"a single {s}"]
    if tag == "counting":
        s, n = inc[0]["class"], inc[0]["count"]
        s = plural(s) if not inc[0].get("color") else f"{inc[0]['color']} {plural(s)}"  # training prompts colour them
        return [f"{NUMBERS[n]} {s}", f"{n} {s}", f"exactly {NUMBERS[n]} {s}"]
    if tag == "colors":
        s, c = inc[0]["class"], inc[0]["color"]
        return [f"{with_article(c)} {s}", f"{with_article(s)} that is {c}", f"{with_article(c + '-colored')} {s}"]
    if tag in ("two_object", "color_attr"):
        a, b = _noun(inc[0]), _noun(inc[1])
        out = [f"{a} and {b}", f"{b} and {a}"]
        if tag == "color_attr":
            out.append(
                f"{with_article(inc[0]['class'])} that is {inc[0]['color']} and "
                f"{with_article(inc[1]['class'])} that is {inc[1]['color']}"
            )
        else:
            out.append(f"{a} together with {b}")
        return out
    if tag == "position":
        rel, target = inc[1]["position"]
        a, b = _noun(inc[1]), _noun(inc[target])
        return [v.format(a=a, b=b) for v in _REL_VARIANTS[rel]]
    return [meta["prompt"][len(PREFIX) :] if meta["prompt"].startswith(PREFIX) else meta["prompt"]]


def paraphrases(prompt_or_meta: str | dict) -> list[str]:
    """Captions that say what the prompt says, the prompt itself first (~30 for a mini GenEval prompt).

    Any other text gets the frame templates around it (CRAFT's template prompt expander)."""
    if isinstance(prompt_or_meta, dict):
        meta: dict | None = prompt_or_meta
        prompt = prompt_or_meta["prompt"]
    else:
        prompt = prompt_or_meta
        meta = metadata_for(prompt)
    if meta is not None and meta.get("tag") in TASKS and meta.get("include"):
        cores = _cores(meta)
    else:
        cores = [prompt[len(PREFIX) :] if prompt.startswith(PREFIX) else prompt]
    out = [prompt]
    for core in cores:
        for frame in FRAMES:
            text = frame.format(core)
            if text not in out:
                out.append(text)
    return out


def _group_phrase(shape: str, color: str | None, count: int) -> str:
    if count == 1:
        return with_article(f"{color} {shape}" if color else shape)
    return f"{NUMBERS[count]} {color + ' ' if color else ''}{plural(shape)}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def describe(scene: Scene, rng: np.random.Generator) -> str:
    """A noun phrase for any scene: its objects grouped and counted, with colours, and for two objects
    sometimes their relation (only when GenEval's rule gives exactly one)."""
    objs = scene.objects
    if not objs:
        return "an empty gray background"
    use_color = rng.random() < 0.75
    if len(objs) == 2 and rng.random() < 0.5:
        a, b = (objs[0], objs[1]) if rng.random() < 0.5 else (objs[1], objs[0])
        rels = [r for r in RELATIONS if _relation_holds(a, b, r, 0.5)]
        if len(rels) == 1:
            na = _group_phrase(a.shape, a.color if use_color else None, 1)
            nb = _group_phrase(b.shape, b.color if use_color else None, 1)
            return f"{na} {rels[0]} {nb}"
    counts: dict[tuple[str, str | None], int] = {}
    for o in objs:
        key = (o.shape, o.color if use_color else None)
        counts[key] = counts.get(key, 0) + 1
    parts = [_group_phrase(s, c, n) for (s, c), n in counts.items()]
    return _join(parts)


def caption_for(scene: Scene, rng: np.random.Generator) -> str:
    """A descriptive caption of any scene, in one of the paraphrase frames."""
    return FRAMES[int(rng.integers(len(FRAMES)))].format(describe(scene, rng))


def mislabel(meta: dict, rng: np.random.Generator) -> dict:
    """The metadata line of a wrong caption for ``meta``'s scenes: one attribute changed (another shape, count,
    colour, the opposite relation, or the two colours swapped), as a noisy web caption would be."""
    import copy

    m = copy.deepcopy(meta)
    inc, tag = m["include"], m["tag"]
    if tag in ("single_object", "two_object"):
        used = {r["class"] for r in inc}
        j = int(rng.integers(len(inc)))
        inc[j]["class"] = str(rng.choice([s for s in SHAPES if s not in used]))
    elif tag == "counting":
        n = int(rng.choice([c for c in range(2, MAX_COUNT + 1) if c != inc[0]["count"]]))
        inc[0]["count"] = n
        m["exclude"] = [{"class": inc[0]["class"], "count": n + 1}]
    elif tag == "colors":
        inc[0]["color"] = str(rng.choice([c for c in COLOR_NAMES if c != inc[0]["color"]]))
    elif tag == "position":
        opposite = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
        inc[1]["position"] = [opposite[inc[1]["position"][0]], inc[1]["position"][1]]
    else:  # color_attr
        inc[0]["color"], inc[1]["color"] = inc[1]["color"], inc[0]["color"]
    m["prompt"] = geneval_phrase(tag, inc)
    return m


def training_pairs(
    n: int, seed: int, task_share: float = 0.75, original_share: float = 0.4, caption_noise: float = 0.0
) -> list[tuple[Scene, str]]:
    """The captioned distribution the base model learns: ``task_share`` of pairs are a random task's prompt
    (the GenEval phrasing with probability ``original_share``, else a paraphrase) with a satisfying scene;
    the rest are free random scenes with descriptive captions. With ``caption_noise`` > 0 that share of the
    task pairs is captioned wrongly (``mislabel``), like web captions (the shipped base has none)."""
    rng = np.random.default_rng(seed)
    pools = {t: _pool_json(t) for t in TASKS}
    pairs: list[tuple[Scene, str]] = []
    for _ in range(n):
        if rng.random() < task_share:
            task = TASKS[int(rng.integers(len(TASKS)))]
            meta = json.loads(pools[task][int(rng.integers(len(pools[task])))])
            scene = scene_for(meta, rng)
            if caption_noise > 0 and rng.random() < caption_noise:  # no draw at all without noise: same stream
                meta = mislabel(meta, rng)
            if rng.random() < original_share:
                text = meta["prompt"]
            else:
                options = paraphrases(meta)
                text = options[int(rng.integers(len(options)))]
        else:
            scene = random_scene(rng)
            text = caption_for(scene, rng)
        pairs.append((scene, text))
    return pairs


# --------------------------------------------------------------------------- a Parti-style prompt set

# PartiPrompts (Yu et al. 2022) tags each prompt with a Category (what it depicts) and a Challenge (what makes
# it hard). The mini world's analog: the category is the first shape a prompt names; the challenges are the
# Parti challenges the mini grammar can express, each with a generator below.
PARTI_CHALLENGES = (
    "Basic",
    "Simple Detail",
    "Quantity",
    "Fine-grained Detail",
    "Properties & Positioning",
    "Style & Format",
    "Linguistic Structures",
    "Complex",
)
_STYLE_FRAMES = tuple(f for f in FRAMES if f not in ("{}", "a photo of {}"))


def _pick(rng: np.random.Generator, options) -> Any:
    return options[int(rng.integers(len(options)))]


def _random_line(rng: np.random.Generator, tasks: tuple[str, ...]) -> dict:
    pool = _pool_json(_pick(rng, tasks))
    return json.loads(_pick(rng, pool))


def _parti_basic(rng: np.random.Generator) -> str:
    return _pick(rng, ("", PREFIX)) + with_article(_pick(rng, SHAPES))


def _parti_simple_detail(rng: np.random.Generator) -> str:
    return _pick(rng, ("", PREFIX)) + f"{with_article(_pick(rng, COLOR_NAMES))} {_pick(rng, SHAPES)}"


def _parti_quantity(rng: np.random.Generator) -> str:
    return _pick(rng, ("", PREFIX)) + f"{NUMBERS[int(rng.integers(2, MAX_COUNT + 1))]} {plural(_pick(rng, SHAPES))}"


def _parti_fine_detail(rng: np.random.Generator) -> str:
    return _random_line(rng, ("color_attr",))["prompt"]


def _parti_positioning(rng: np.random.Generator) -> str:
    line = _random_line(rng, ("position",))
    b, a = line["include"]
    colors = rng.choice(len(COLOR_NAMES), size=2, replace=False)
    na, nb = (
        with_article(f"{COLOR_NAMES[colors[0]]} {a['class']}"),
        with_article(f"{COLOR_NAMES[colors[1]]} {b['class']}"),
    )
    return f"{PREFIX}{na} {a['position'][0]} {nb}" if rng.random() < 0.5 else line["prompt"]


def _parti_style(rng: np.random.Generator) -> str:
    return _pick(rng, _STYLE_FRAMES).format(describe(random_scene(rng, int(rng.integers(1, 3))), rng))


def _parti_linguistic(rng: np.random.Generator) -> str:
    line = _random_line(rng, ("counting", "colors", "two_object", "position", "color_attr"))
    return _pick(rng, _cores(line)[1:])  # every phrasing but the plain GenEval one


def _parti_complex(rng: np.random.Generator) -> str:
    """3-4 objects in at least two groups (three red squares alone are Quantity)."""
    while True:
        phrase = describe(random_scene(rng, int(rng.integers(3, 5))), rng)
        if " and " in phrase:
            return PREFIX + phrase


_PARTI_DRAW = dict(
    zip(
        PARTI_CHALLENGES,
        (
            _parti_basic,
            _parti_simple_detail,
            _parti_quantity,
            _parti_fine_detail,
            _parti_positioning,
            _parti_style,
            _parti_linguistic,
            _parti_complex,
        ),
    )
)


def parti_category(prompt: str) -> str:
    """The first shape a prompt names, as a Parti-style category ("Circles"); "Other" if none."""
    words = prompt.lower().replace(",", " ").split()
    for word in words:
        for shape in SHAPES:
            if word in (shape, plural(shape)):
                return plural(shape).capitalize()
    return "Other"


def parti_prompts(n_per_challenge: int, seed: int) -> list[dict]:
    """``n_per_challenge`` prompts per challenge: ``{"prompt", "category", "challenge"}``, drawn with ``seed``,
    interleaved across challenges (so the first prompts of any category mix challenges, as --limit takes them).

    Within a challenge prompts are distinct while its space allows (Basic has 10), then repeat."""
    if n_per_challenge < 0:
        raise ValueError("n_per_challenge must be >= 0")
    blocks: list[list[dict]] = []
    for c_index, challenge in enumerate(PARTI_CHALLENGES):
        rng = np.random.default_rng([int(seed), 0x9A27, c_index])
        draw = _PARTI_DRAW[challenge]
        chosen: list[str] = []
        for _ in range(100 * n_per_challenge):
            if len(chosen) == n_per_challenge:
                break
            prompt = draw(rng)
            if prompt not in chosen:
                chosen.append(prompt)
        distinct = len(chosen)
        while len(chosen) < n_per_challenge:
            chosen.append(chosen[len(chosen) % distinct])
        blocks.append([{"prompt": p, "category": parti_category(p), "challenge": challenge} for p in chosen])
    return [block[i] for i in range(n_per_challenge) for block in blocks]


# --------------------------------------------------------------------------- training prompts, apart from evaluation

# The mini world's evaluation prompt sets (GenEval-mini at its default prompt seed and the next ones a second or
# third protocol uses, the rewards and ControlNet suites' mini sets, the human-labelled judge set) cover the whole
# GenEval-mini space of single_object, two_object and counting (5, 10 and 15 prompts up to word order), and nearly
# all of colors and position. Training prompts therefore come from a grammar that exercises the same skills in
# combinations GenEval-mini never asks for (as Flow-GRPO trains on GenEval-style prompts of other object
# combinations than the test set's): counting with a colour, two objects of which one is coloured, a relation
# between coloured objects, and the colour-attribution prompts no evaluation set draws.
EVAL_GENEVAL_SEEDS = (1000, 1001, 1002, 1003, 1004)  # GenEval-mini protocols (prompt seeds; 40 per task)
EVAL_OTHER_SETS = ((3000, 20), (2024, 40), (2025, 40))  # ControlNet-mini (seed, per task); the judge set's seeds
TRAIN_FAMILIES = ("counting", "two_object", "position", "color_attr")
_OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def canonical(meta: dict) -> tuple:
    """What a metadata line asks for, independent of word order: "A and B" is "B and A", "A left of B" is
    "B right of A". Two prompts with the same canonical form ask for the same scene."""
    inc = meta.get("include", [])
    clauses = [(r["class"], int(r["count"]), r.get("color")) for r in inc]
    relations = []
    for i, r in enumerate(inc):
        if "position" in r:
            rel, j = r["position"]
            a, b = clauses[i], clauses[j]
            relations.append(min((a, rel, b), (b, _OPPOSITE[rel], a)))
    excl = sorted((r["class"], int(r["count"])) for r in meta.get("exclude", []))
    return (tuple(sorted(clauses, key=repr)), tuple(sorted(relations, key=repr)), tuple(excl))


def _train_phrase(tag: str, include: list[dict]) -> str:
    if tag == "counting":
        r = include[0]
        return f"{PREFIX}{NUMBERS[r['count']]} {r['color']} {plural(r['class'])}"
    if tag == "position":  # include: [B, A with position [rel, 0]] -> "A rel B", as GenEval's position prompts
        return f"{PREFIX}{_noun(include[1])} {include[1]['position'][0]} {_noun(include[0])}"
    return f"{PREFIX}{_noun(include[0])} and {_noun(include[1])}"


@lru_cache(maxsize=None)
def _train_json(tag: str) -> tuple[str, ...]:
    lines: list[dict] = []
    if tag == "counting":
        for s in SHAPES:
            for n in range(2, MAX_COUNT + 1):
                for c in COLOR_NAMES:
                    inc = [{"class": s, "count": n, "color": c}]
                    lines.append({"tag": tag, "include": inc, "exclude": [{"class": s, "count": n + 1}]})
    elif tag == "two_object":  # one object coloured, the other not (either order)
        for a in SHAPES:
            for b in SHAPES:
                if a == b:
                    continue
                for c in COLOR_NAMES:
                    lines.append(
                        {"tag": tag, "include": [{"class": a, "count": 1, "color": c}, {"class": b, "count": 1}]}
                    )
                    lines.append(
                        {"tag": tag, "include": [{"class": a, "count": 1}, {"class": b, "count": 1, "color": c}]}
                    )
    elif tag == "position":
        for a in SHAPES:
            for b in SHAPES:
                if a == b:
                    continue
                for ca in COLOR_NAMES:
                    for cb in COLOR_NAMES:
                        if ca == cb:
                            continue
                        for rel in RELATIONS:
                            lines.append(
                                {
                                    "tag": tag,
                                    "include": [
                                        {"class": b, "count": 1, "color": cb},
                                        {"class": a, "count": 1, "color": ca, "position": [rel, 0]},
                                    ],
                                }
                            )
    elif tag == "color_attr":
        banned = evaluation_canonicals()
        lines = [m for m in task_pool("color_attr") if canonical(m) not in banned]
    else:
        raise ValueError(f"unknown training family '{tag}' (known: {', '.join(TRAIN_FAMILIES)})")
    out = []
    for m in lines:
        if "prompt" not in m:
            m["prompt"] = _train_phrase(tag, m["include"])
        out.append(
            json.dumps(
                {
                    "tag": m["tag"],
                    "include": m["include"],
                    **({"exclude": m["exclude"]} if "exclude" in m else {}),
                    "prompt": m["prompt"],
                }
            )
        )
    return tuple(out)


def training_space(family: str) -> list[dict]:
    """Every training prompt of a family (metadata lines in GenEval's format), in a fixed order."""
    return [json.loads(s) for s in _train_json(family)]


@lru_cache(maxsize=None)
def evaluation_canonicals() -> frozenset:
    """The canonical forms of every mini-world evaluation prompt set (see EVAL_GENEVAL_SEEDS): what no training
    prompt may ask for."""
    lines = [m for seed in EVAL_GENEVAL_SEEDS for m in geneval_prompts(40, seed)]
    lines += [m for seed, n in EVAL_OTHER_SETS for m in geneval_prompts(n, seed)]
    return frozenset(canonical(m) for m in lines)


def training_prompts(n: int, seed: int) -> list[dict]:
    """``n`` training prompts (metadata lines), round-robin over ``TRAIN_FAMILIES``, each family's prompts in a
    seeded order without repeats (until its space is used up). None asks for what an evaluation prompt asks for
    (compared by ``canonical``); that is checked here, not assumed."""
    if n < 0:
        raise ValueError("n must be >= 0")
    orders = {
        f: np.random.default_rng([int(seed), 0x7EA1, i]).permutation(len(_train_json(f)))
        for i, f in enumerate(TRAIN_FAMILIES)
    }
    out: list[dict] = []
    i = 0
    while len(out) < n:
        for f in TRAIN_FAMILIES:
            if len(out) < n:
                order = orders[f]
                out.append(json.loads(_train_json(f)[int(order[i % len(order)])]))
        i += 1
    banned = evaluation_canonicals()
    leaked = [m["prompt"] for m in out if canonical(m) in banned]
    if leaked:  # a bug in the grammar, never a user error
        raise AssertionError(f"training prompts ask for what evaluation prompts ask for: {leaked[:3]}")
    return out


@lru_cache(maxsize=None)
def _any_by_prompt() -> dict[str, str]:
    out = dict(_by_prompt())
    for f in TRAIN_FAMILIES:
        for s in _train_json(f):
            out.setdefault(json.loads(s)["prompt"], s)
    return out


def metadata_for(prompt: str) -> dict | None:
    """The metadata line of a mini GenEval prompt or a mini training prompt, or None for any other text."""
    s = _any_by_prompt().get(prompt.strip())
    return json.loads(s) if s is not None else None
