"""Prompt expansion for candidate pools (CRAFT's second stage), pluggable:

- ``template``: the world's own rewrites where it has them (``World.paraphrases``: in the mini world its grammar's
  paraphrases, the same content in other words and frames, e.g. "a red circle on a gray background"); elsewhere
  fixed detail templates around the prompt;
- ``llm``: a causal language model through transformers (a hub id or a local folder; its chat template when it
  has one; greedy, or sampled with a seed), or any OpenAI-compatible chat endpoint (``llm_endpoint``: a base URL
  such as http://127.0.0.1:8000/v1; the API key, if any, from $OPENAI_API_KEY).

Expansions are cached per (settings, prompt) under ``<results>/cache/expansions/``: an LLM is asked once.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

from craft_bench.errors import UserError

SYSTEM = (
    "You rewrite prompts for a text-to-image model. Keep every object, count, colour and spatial relation "
    "of the prompt exactly; add only visual detail (style, lighting, composition). Answer with the rewritten "
    "prompt only, one line."
)
DETAIL_TEMPLATES = (
    "{}, highly detailed, sharp focus",
    "a high quality photograph of {}",
    "{}, professional lighting, 4k",
    "{}, clean composition, vivid colors",
    "an artistic rendering of {}",
)


# The rewrites the expansion cache's keys were first written with: ``"mini": True`` in a key means these. Another
# world's own rewrites are named in the key as well.
FIRST_REWRITES = "craft_bench.mini.prompts:paraphrases"


def expand(
    prompts: Sequence[str], spec: Any, results_root: str | Path, world: Any, progress: bool = True
) -> dict[str, list[str]]:
    """``spec.expansions_per_prompt`` expansions of every prompt (cached); ``world`` (``craft_bench.world.World``):
    whose rewrites ``template`` uses."""
    settings = {
        "mode": spec.expansion,
        "n": spec.expansions_per_prompt,
        "seed": spec.prompt_seed,
        "mini": world.paraphrases is not None,
        "llm": dict(spec.llm),
    }
    if world.paraphrases not in (None, FIRST_REWRITES):
        settings["rewrites"] = world.paraphrases
    key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:24]
    path = Path(results_root) / "cache" / "expansions" / f"{key}.json"
    cached: dict[str, list[str]] = json.loads(path.read_text()) if path.is_file() else {}
    todo = [p for p in dict.fromkeys(prompts) if p not in cached]
    if todo:
        if spec.expansion == "template":
            new = {p: template_expansions(p, spec.expansions_per_prompt, spec.prompt_seed, world) for p in todo}
        elif spec.expansion == "llm":
            new = LLMExpander(**dict(spec.llm)).expand_all(todo, spec.expansions_per_prompt, spec.prompt_seed, progress)
        else:
            raise UserError(f"unknown expansion '{spec.expansion}' (none, template, llm)")
        cached.update(new)
        from craft_bench.store import atomic_write_json

        atomic_write_json(path, cached)
    return {p: cached[p] for p in prompts}


def template_expansions(prompt: str, n: int, seed: int, world: Any) -> list[str]:
    """``n`` rewrites of ``prompt`` that say the same thing (drawn with a per-prompt seed): the world's own (the mini
    grammar's paraphrases), else the detail templates."""
    import numpy as np

    own = world.rewrites(prompt)
    options = [p for p in own if p != prompt] if own is not None else [t.format(prompt) for t in DETAIL_TEMPLATES]
    rng = np.random.default_rng([seed, int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16)])
    return [options[i] for i in rng.permutation(len(options))[:n]]


class LLMExpander:
    """Rewrites prompts with a language model: local (transformers) or an OpenAI-compatible endpoint."""

    def __init__(
        self,
        llm_model: str = "",
        llm_endpoint: str = "",
        llm_temperature: float = 0.0,
        llm_max_new_tokens: int = 60,
        **_: Any,
    ) -> None:
        if not llm_model and not llm_endpoint:
            raise UserError(
                "expansion=llm needs a model: --set method.llm_model=HUB_ID_OR_FOLDER "
                "or --set method.llm_endpoint=http://HOST:PORT/v1"
            )
        self.model_name, self.endpoint = llm_model, llm_endpoint.rstrip("/")
        self.temperature, self.max_new_tokens = float(llm_temperature), int(llm_max_new_tokens)
        self._model: Any = None

    def expand_all(self, prompts: Sequence[str], n: int, seed: int, progress: bool = True) -> dict[str, list[str]]:
        from tqdm.auto import tqdm

        out = {}
        for p in tqdm(prompts, desc="expand", disable=not progress, leave=False):
            out[p] = [self.rewrite(p, seed + i) for i in range(n)]
        return out

    def rewrite(self, prompt: str, seed: int) -> str:
        text = self._http(prompt, seed) if self.endpoint else self._local(prompt, seed)
        line = text.strip().splitlines()[0].strip().strip('"') if text.strip() else ""
        return line or prompt

    def _messages(self, prompt: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]

    def _http(self, prompt: str, seed: int) -> str:
        import urllib.error
        import urllib.request

        body = {
            "model": self.model_name or "default",
            "messages": self._messages(prompt),
            "temperature": self.temperature,
            "max_tokens": self.max_new_tokens,
            "seed": seed,
        }
        headers = {"Content-Type": "application/json"}
        if os.environ.get("OPENAI_API_KEY"):
            headers["Authorization"] = f"Bearer {os.environ['OPENAI_API_KEY']}"
        req = urllib.request.Request(
            f"{self.endpoint}/chat/completions", data=json.dumps(body).encode(), headers=headers
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                reply = json.loads(resp.read())
            return reply["choices"][0]["message"]["content"]
        except (urllib.error.URLError, OSError, KeyError, ValueError, IndexError) as exc:
            raise UserError(
                f"LLM endpoint {self.endpoint} failed ({type(exc).__name__}: {exc}); check "
                "method.llm_endpoint (an OpenAI-compatible base URL ending in /v1)"
            ) from None

    def _local(self, prompt: str, seed: int) -> str:
        import torch

        if self._model is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            try:
                tok = AutoTokenizer.from_pretrained(self.model_name)
                model = AutoModelForCausalLM.from_pretrained(self.model_name).eval()
            except OSError as exc:
                raise UserError(
                    f"method.llm_model={self.model_name}: cannot load it ({str(exc).splitlines()[0]}); "
                    "give a local folder or a hub id available offline"
                ) from None
            self._model = (tok, model)
        tok, model = self._model
        if getattr(tok, "chat_template", None):
            ids = tok.apply_chat_template(self._messages(prompt), add_generation_prompt=True, return_tensors="pt")
            if not torch.is_tensor(ids):
                ids = ids["input_ids"]
        else:
            ids = tok(f"{SYSTEM}\nPrompt: {prompt}\nRewritten:", return_tensors="pt").input_ids
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "pad_token_id": tok.pad_token_id or tok.eos_token_id,
        }
        if self.temperature > 0:
            torch.manual_seed(seed)
            kwargs.update(do_sample=True, temperature=self.temperature)
        else:
            kwargs["do_sample"] = False
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
        return tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
