"""``load_diffusers(SPEC)``: a diffusers folder or Hub repository as a :class:`DiffusersDenoiser`.

Layouts: **flat** (``config.json`` + weights of one network, ``scheduler_config.json`` beside it or
in ``scheduler/``) and **pipeline** (``model_index.json`` and/or ``unet/`` or ``transformer/``,
``scheduler/``, optionally ``vae/`` (a latent model), ``text_encoder/`` + ``tokenizer/`` (and
``_2``, ``_3`` for SD3)). Every part is loaded with its class's ``from_pretrained`` (``subfolder=``
for the pipeline layout), ``local_files_only`` when SPEC is a local folder, and
``use_safetensors=True`` whenever the part has safetensors files (never unpickling then). A Hub id
(``owner/name``) is listed and read through ``huggingface_hub`` and loaded the same way.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path

import torch

from ...errors import ParameterError

INSTALL_MESSAGE = "diffusers:SPEC needs the optional diffusers package: pip install diffusers"
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
NETWORK_FOLDERS = ("unet", "transformer")
TEXT_PARTS = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "text_encoder_3", "tokenizer_3")
WEIGHTS = (".safetensors", ".safetensors.index.json", ".bin", ".bin.index.json")


class Source:
    """A local folder or a Hub repository: its file list, its JSON files, and ``from_pretrained`` arguments."""

    def __init__(self, spec: str):
        self.spec = spec
        root = Path(spec).expanduser()
        self.local = root.is_dir()
        if self.local:
            self.location = str(root)
            self.files = _local_files(root)
        elif HUB_ID.fullmatch(spec) and not spec.startswith("."):
            self.location = spec
            try:
                from huggingface_hub import list_repo_files

                self.files = set(list_repo_files(spec))
            except Exception as error:  # offline, not found, gated: all say the same to the user
                raise ParameterError("model", f"diffusers:{spec}: no such local folder, and the Hub repository {spec!r} "
                                              f"cannot be listed: {error}") from error  # fmt: skip
        else:
            raise ParameterError("model", f"diffusers:SPEC must be a local folder or a Hub id (owner/name); {spec!r} is "
                                          "neither (no such folder)")  # fmt: skip

    def json(self, relative: str) -> dict:
        try:
            if self.local:
                text = (Path(self.location) / relative).read_text()
            else:
                from huggingface_hub import hf_hub_download

                text = Path(hf_hub_download(self.location, relative)).read_text()
            return json.loads(text)
        except (OSError, ValueError) as error:
            raise ParameterError("model", f"diffusers:{self.spec}: cannot read {relative}: {error}") from error

    def has(self, relative: str) -> bool:
        return relative in self.files

    def weights(self, folder: str) -> bool:
        """Whether ``folder``'s weights are safetensors (True) or pickles only (False); none: refused."""
        inside = [f for f in self.files if os.path.dirname(f) == folder]
        if any(f.endswith((".safetensors", ".safetensors.index.json")) for f in inside):
            return True
        if any(f.endswith(WEIGHTS) for f in inside):
            return False
        raise ParameterError("model", f"diffusers:{self.spec}: no weights (.safetensors or .bin) in {folder or 'the folder'}")

    def pretrained(self, cls, folder: str, dtype_key: str | None, dtype: torch.dtype | None, safetensors: bool | None = None):
        kwargs = {"local_files_only": self.local}
        if dtype_key == "torch_dtype" and importlib.util.find_spec("accelerate") is None:
            kwargs["low_cpu_mem_usage"] = False  # diffusers' default needs accelerate (and warns without it)
        if folder:
            kwargs["subfolder"] = folder
        if safetensors is not None:
            kwargs["use_safetensors"] = safetensors
        if dtype_key is not None and dtype is not None:
            kwargs[dtype_key] = dtype
        try:
            return cls.from_pretrained(self.location, **kwargs)
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as error:
            raise ParameterError("model", f"diffusers:{self.spec}: cannot load {folder or 'the network'} "
                                          f"({cls.__name__}): {error}") from error  # fmt: skip


def _local_files(root: Path) -> set[str]:
    """Relative paths of the files at the top of ``root`` and one folder down."""
    files = set()
    for entry in os.scandir(root):
        if entry.is_file():
            files.add(entry.name)
        elif entry.is_dir():
            files.update(f"{entry.name}/{sub.name}" for sub in os.scandir(entry.path) if sub.is_file())
    return files


def _layout(source: Source) -> tuple[str, str, bool]:
    """(network folder, scheduler folder, pipeline layout?) — "" is the top folder."""
    network = next((d for d in NETWORK_FOLDERS if source.has(f"{d}/config.json")), None)
    pipeline = network is not None or source.has("model_index.json")
    if pipeline and network is None:
        raise ParameterError("model", f"diffusers:{source.spec}: a pipeline folder without unet/ or transformer/ "
                                      "(a config.json there)")  # fmt: skip
    if not pipeline:
        if not source.has("config.json"):
            raise ParameterError("model", f"no diffusers model in {source.spec!r}: expected model_index.json with unet/ or "
                                          "transformer/, or a network's config.json and weights")  # fmt: skip
        network = ""
    candidates = ("scheduler",) if pipeline else ("", "scheduler")
    scheduler = next((d for d in candidates if source.has(os.path.join(d, "scheduler_config.json"))), None)
    if scheduler is None:
        raise ParameterError("model", f"diffusers:{source.spec}: no scheduler_config.json "
                                      f"({'in scheduler/' if pipeline else 'beside config.json or in scheduler/'}); "
                                      "the scheduler decides the ODE, so it is required")  # fmt: skip
    return network, scheduler, pipeline


def _diffusers_class(diffusers, name: str | None, what: str, spec: str):
    cls = getattr(diffusers, name, None) if isinstance(name, str) else None
    if cls is None:
        raise ParameterError("model", f"diffusers:{spec}: unknown {what} class {name!r}")
    return cls


def load_diffusers(spec: str, device: str | torch.device | None = None, dtype: torch.dtype | None = None):
    """The diffusers model SPEC (local folder or Hub id) as a denoiser (module docstring).

    ``device`` defaults to the CPU, ``dtype`` (the weights' dtype: float32, float64, float16,
    bfloat16) to float32; the engine's state keeps its own dtype.
    """
    try:
        import diffusers
    except ImportError as error:
        raise ParameterError("model", INSTALL_MESSAGE) from error
    from .denoiser import DiffusersDenoiser
    from .networks import SUPPORTED as NETWORKS
    from .networks import JOINT_KEYWORDS, Network, joint_transformer
    from .schedulers import SUPPORTED as SCHEDULERS
    from .schedulers import scheduler_family

    source = Source(spec)
    name = "diffusers:" + spec
    device = torch.device(device) if device is not None else torch.device("cpu")
    dtype = dtype or torch.float32
    network_dir, scheduler_dir, pipeline = _layout(source)

    scheduler_config = source.json(os.path.join(scheduler_dir, "scheduler_config.json"))
    scheduler_name = scheduler_config.get("_class_name")
    if scheduler_name not in SCHEDULERS:
        raise ParameterError("model", f"{name}: the scheduler {scheduler_name} is not supported; supported schedulers: "
                                      f"{', '.join(SCHEDULERS)}")  # fmt: skip
    network_name = source.json(os.path.join(network_dir, "config.json")).get("_class_name")
    network_cls = getattr(diffusers, network_name, None) if isinstance(network_name, str) else None
    if network_cls is None or network_name not in NETWORKS and not joint_transformer(network_cls):
        raise ParameterError("model", f"{name}: the network class {network_name} is not supported; supported: "
                                      f"{', '.join(NETWORKS)} or a transformer called with {', '.join(JOINT_KEYWORDS)}")  # fmt: skip

    module = source.pretrained(network_cls, network_dir, "torch_dtype", dtype, source.weights(network_dir))
    wrong = any(p.dtype != dtype for p in module.parameters() if p.is_floating_point())
    if wrong and not getattr(module, "_keep_in_fp32_modules", None):  # SD3 comes back float32 whatever torch_dtype says
        module = module.to(dtype)
    network = Network(module.to(device).eval().requires_grad_(False), name, dtype)
    scheduler = _diffusers_class(diffusers, scheduler_name, "scheduler", spec).from_config(scheduler_config)
    family = scheduler_family(scheduler, name, (network.shape[1] // network.patch_size) * (network.shape[2] // network.patch_size))

    text = decoder = None
    if pipeline and source.has("vae/config.json"):
        decoder = _load_vae(diffusers, source, network.shape, device, dtype, name)
    if network.text_conditioned:
        text = _load_text(source, network, device, dtype, name)
    return DiffusersDenoiser(network, family, name, device, text, decoder)


def _load_vae(diffusers, source: Source, shape, device, dtype, name: str):
    from .latent import LatentDecoder

    vae_name = source.json("vae/config.json").get("_class_name")
    if vae_name != "AutoencoderKL":
        raise ParameterError("model", f"{name}: the VAE class {vae_name} is not supported; supported: AutoencoderKL")
    config = source.json("vae/config.json")
    vae_dtype = torch.float32 if dtype == torch.float16 and config.get("force_upcast", True) else dtype
    vae = source.pretrained(diffusers.AutoencoderKL, "vae", "torch_dtype", vae_dtype, source.weights("vae"))
    return LatentDecoder(vae.to(device).eval().requires_grad_(False), shape, device, name)


def _load_text(source: Source, network, device, dtype, name: str):
    """The text encoders and tokenizers present in the pipeline folder, behind diffusers' encode_prompt."""
    from .text import TextEncoder, text_pipeline

    components = {"network": network.module}
    present = [p for p in TEXT_PARTS if source.has(f"{p}/config.json") or source.has(f"{p}/tokenizer_config.json")]
    if present:
        try:
            import transformers
        except ImportError as error:
            message = f"{name}: its text encoders need the transformers package: pip install transformers"
            raise ParameterError("model", message) from error
        for part in present:
            if part.startswith("tokenizer"):
                components[part] = source.pretrained(transformers.AutoTokenizer, part, None, None)
            else:
                architecture = (source.json(f"{part}/config.json").get("architectures") or [None])[0]
                cls = getattr(transformers, architecture, None) if isinstance(architecture, str) else None
                if cls is None:
                    raise ParameterError("model", f"{name}: unknown text encoder class {architecture!r} in {part}/")
                encoder = source.pretrained(cls, part, "dtype", dtype, source.weights(part))
                components[part] = encoder.to(device).eval().requires_grad_(False)
    for i in ("", "_2", "_3"):  # an encoder is usable only with its tokenizer
        if (components.get("text_encoder" + i) is None) != (components.get("tokenizer" + i) is None):
            components.pop("text_encoder" + i, None), components.pop("tokenizer" + i, None)
    config = network.module.config
    embed_dim = config.get("cross_attention_dim") if network.kind == "UNet2DConditionModel" else config.get("joint_attention_dim")
    return TextEncoder(text_pipeline(components, network.kind), network.pooled, device, name,
                       int(embed_dim) if isinstance(embed_dim, int) else None)  # fmt: skip
