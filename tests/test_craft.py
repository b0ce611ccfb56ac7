"""CRAFT: its filter and advantages on a synthetic pool, its loss against a hand computation, its settings, and
prompt expansion (templates, a tiny local LLM, an OpenAI-compatible endpoint started here)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fake_models import FakeModel

from craft_bench import registry
from craft_bench.methods.craft import Craft, CraftConfig, composite_scores, select
from craft_bench.mini.world import MINI
from craft_bench.train.pool import Candidate, PoolSpec


def pool(scores, expanded=None, rewards=("mini-clip", "mini-aes")):
    """A pool from {group: [(clip, aes), ...]}; ``expanded`` marks candidate indices generated from expansions."""
    cands = []
    for g, rows in scores.items():
        for i, (a, b) in enumerate(rows):
            cands.append(
                Candidate(
                    group=g,
                    original=f"p{g}",
                    text=f"p{g}",
                    expanded=bool(expanded and (g, i) in expanded),
                    index=i % 4,
                    image_key=f"{g}-{i}",
                    image_path=f"{g}-{i}.png",
                    scores={rewards[0]: a, rewards[1]: b},
                )
            )
    spec = PoolSpec(prompts="mini", size=len(scores), prompt_seed=0, k=4, rewards=rewards)
    return SimpleNamespace(spec=spec, candidates=cands)


def test_registered_with_help_and_presets():
    assert registry.methods.get("craft") is Craft
    assert Craft.trainable and Craft.presets["sdxl"] == {"lr": 5e-5, "steps": 200, "batch_size": 128, "lora_rank": 0}
    from craft_bench.spec import field_help

    assert all(help_text for _, _, _, help_text in field_help(CraftConfig))


@pytest.mark.parametrize(
    "bad",
    [
        dict(k=1),
        dict(filter="all"),
        dict(reference="best"),
        dict(budget=0),
        dict(lr=-1.0),
        dict(lr=float("nan")),
        dict(steps=0),
        dict(expansion="llm", expansions=0),
        dict(guidance=float("nan")),
        dict(cond_dropout=1.0),
    ],
)
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        CraftConfig(**bad)


def test_candidates_are_drawn_at_guidance_3_on_mini_and_at_the_samplers_elsewhere():
    from craft_bench.spec import SamplerSpec
    from craft_bench.train.pool import candidate_guidance
    from craft_bench.world import SD15

    sampler = SamplerSpec(guidance_scale=7.5)
    assert candidate_guidance(CraftConfig(), sampler, MINI) == 3.0
    assert candidate_guidance(CraftConfig(), sampler, SD15) == 7.5
    assert candidate_guidance(CraftConfig(guidance=2.0), sampler, MINI) == 2.0


def test_composite_is_the_mean_of_pool_wide_z_scores():
    p = pool({0: [(1.0, 10.0), (3.0, 30.0)], 1: [(2.0, 20.0), (2.0, 20.0)]})
    np.testing.assert_allclose(composite_scores(p), [-1.414214, 1.414214, 0.0, 0.0], atol=1e-5)


def test_hpa_keeps_only_candidates_better_on_every_reward_with_group_normalised_advantages():
    p = pool({0: [(1.0, 1.0), (2.0, 0.0), (3.0, 3.0), (0.0, 0.0)]})  # means: clip 1.5, aes 1.0
    kept, stats = select(p, CraftConfig(filter="hpa"))
    assert [c.image_key for c, _, _ in kept] == ["0-2"]  # the only one above both means
    comp = composite_scores(p)
    a = (comp - comp.mean()) / (comp.std() + 1e-6)
    assert kept[0][2] == pytest.approx(a[2])  # A = (r - mean_group) / (std_group + eps)
    assert kept[0][1] == pytest.approx(1.0)  # advantage weights normalised to mean 1
    assert stats["passed_filter"] == 1 and stats["kept"] == 1


def test_filter_levels_and_references():
    rows = {0: [(1.0, 1.0), (2.0, 0.0), (3.0, 3.0), (0.0, 0.0)]}
    single = {c.image_key for c, _, _ in select(pool(rows), CraftConfig(filter="single", negatives="keep"))[0]}
    assert single == {"0-1", "0-2"}  # 0-1 improves the clip score only
    none = select(pool(rows), CraftConfig(filter="none", negatives="keep"))[0]
    assert len(none) == 4
    # same_seed: compare with the original prompt's candidate of the same index; expanded candidates only
    p = pool({0: [(1.0, 1.0), (0.5, 0.5), (2.0, 2.0), (0.0, 3.0)]}, expanded={(0, 2), (0, 3)})
    for c, i in zip(p.candidates[2:], (0, 1)):
        c.index = i
    kept = {c.image_key for c, _, _ in select(p, CraftConfig(filter="hpa", reference="same_seed", negatives="keep"))[0]}
    assert kept == {"0-2"}  # beats index 0's (1, 1) on both; 0-3 loses on clip to index 1's 0.5


def test_budget_keeps_the_best_advantages_and_uniform_weighting():
    rows = {g: [(float(g + i), float(g + i)) for i in range(4)] for g in range(6)}
    kept, _ = select(pool(rows), CraftConfig(filter="none", budget=5))
    adv = [a for _, _, a in kept]
    assert len(kept) == 5 and adv == sorted(adv, reverse=True) and min(adv) > 0
    kept_u, _ = select(pool(rows), CraftConfig(filter="none", budget=5, weighting="uniform"))
    assert [w for _, w, _ in kept_u] == [1.0] * 5


def test_loss_is_the_advantage_weighted_denoising_error():
    g = torch.Generator().manual_seed(0)
    x, n = torch.randn(3, 4, 2, 2, generator=g), torch.randn(3, 4, 2, 2, generator=g)
    t = torch.tensor([10, 500, 900])
    batch = {
        "image": x,
        "noise": n,
        "timesteps": t,
        "cond": {"embeds": torch.zeros(3, 2, 2)},
        "weight": torch.tensor([2.0, 0.5, 0.5]),
        "snr_weight": torch.tensor([1.0, 1.0, 0.5]),
    }
    loss, logs = Craft(CraftConfig()).loss(batch, FakeModel())
    m = FakeModel()
    err = ((0.5 * m.noisy(x, n, t) - n) ** 2).mean(dim=(1, 2, 3))
    expect = (torch.tensor([2.0, 0.5, 0.25]) * err).mean()
    assert float(loss) == pytest.approx(float(expect)) and logs["mse"] == pytest.approx(float(err.mean()))


# --------------------------------------------------------------------------- expansion


def spec(**kw):
    base = dict(prompts="mini", size=2, prompt_seed=3, k=2, expansion="template", expansions_per_prompt=2)
    base.update(kw)
    return PoolSpec(**base)


def test_template_expansion_paraphrases_mini_prompts(tmp_path):
    from craft_bench.mini.prompts import parse_prompt
    from craft_bench.train.expand import expand

    out = expand(["a photo of two red circles", "a photo of a cross"], spec(), tmp_path, MINI)
    assert all(len(v) == 2 and p not in v for p, v in out.items())
    assert any("circles" in e for e in out["a photo of two red circles"])
    assert parse_prompt("a photo of a cross") is not None
    again = expand(["a photo of a cross"], spec(), tmp_path, MINI)
    assert again["a photo of a cross"] == out["a photo of a cross"]  # cached and deterministic


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory):
    """A randomly initialised GPT-2-architecture causal LM with a word-level tokenizer and a chat template,
    saved locally in the real layout."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = "a photo of red blue circle square two three and left right above below studio light detail sharp".split()
    vocab = {w: i for i, w in enumerate(["<unk>", "<eos>", "<sys>", "<usr>", "<bot>"] + words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>", pad_token="<eos>")
    fast.chat_template = "{% for m in messages %}{{ '<' + m['role'][:3] + '> ' + m['content'] + ' ' }}{% endfor %}<bot>"
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(vocab), n_positions=256, n_embd=32, n_layer=1, n_head=2, eos_token_id=1, pad_token_id=1
        )
    )
    folder = tmp_path_factory.mktemp("llm")
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def test_llm_expansion_with_a_local_model(tiny_llm, tmp_path):
    from craft_bench.train.expand import expand

    s = spec(expansion="llm", llm=(("llm_model", str(tiny_llm)),), expansions_per_prompt=1)
    out = expand(["a photo of a red circle"], s, tmp_path, MINI)
    text = out["a photo of a red circle"][0]
    assert isinstance(text, str) and text  # greedy decoding of a random model: some words of its vocabulary
    assert expand(["a photo of a red circle"], s, tmp_path, MINI) == out  # deterministic (and cached)


def test_llm_expansion_through_an_openai_compatible_endpoint(tmp_path):
    from craft_bench.train.expand import expand

    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, body))
            reply = {
                "choices": [
                    {"message": {"role": "assistant", "content": body["messages"][-1]["content"] + ", studio light"}}
                ]
            }
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        s = spec(expansion="llm", llm=(("llm_endpoint", url), ("llm_model", "tiny")), expansions_per_prompt=2)
        out = expand(["a photo of a blue square"], s, tmp_path, MINI)
    finally:
        server.shutdown()
    assert out == {"a photo of a blue square": ["a photo of a blue square, studio light"] * 2}
    path, body = seen[0]
    assert path == "/v1/chat/completions" and body["model"] == "tiny" and body["messages"][0]["role"] == "system"
    assert [b["seed"] for _, b in seen] == [3, 4]  # seeded per expansion


def test_an_unreachable_endpoint_is_a_one_line_error(tmp_path):
    from craft_bench.errors import UserError
    from craft_bench.train.expand import expand

    s = spec(expansion="llm", llm=(("llm_endpoint", "http://127.0.0.1:9/v1"),), expansions_per_prompt=1)
    with pytest.raises(UserError, match="llm_endpoint"):
        expand(["a photo of a cross"], s, tmp_path, MINI)
