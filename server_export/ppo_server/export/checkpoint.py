"""What a checkpoint folder must hold before anything loads from it, checked from its files alone.

``ppo-export --model`` takes a folder or a hub id. ``locate`` turns it into a local folder (a hub id
is fetched only when the hub answers; a missing folder is refused at once). ``check`` then reads the
folder against the components its family needs (``families.COMPONENTS``): ``model_index.json`` is a
JSON object listing each of them as ``[library, class]``; each has its folder, a config that is a JSON
object, and its weights or tokenizer files; the scheduler is a class diffusers has and states the
noise schedule the model was trained on. Every failure is one ``CheckpointError`` line that names the
checkpoint, the component and what to do. What only loading can tell (weights that do not fit their
config, tensors they lack) is turned into one line where each component loads (``load_component``,
``load_scheduler``; ``families.load`` assembles the pipeline from them).
"""

from __future__ import annotations

import importlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, overload

from ppo_client import contract
from ppo_server.backends.schedulers import SPECS, build_scheduler, scheduler_class
from ppo_server.errors import CheckpointError

logger = logging.getLogger(__name__)

INDEX = "model_index.json"
HUB_PROBE_TIMEOUT_S = 5.0
"""How long the one look-up that decides whether the hub can be reached may take."""
NOISE_SCHEDULE = ("beta_start", "beta_end", "beta_schedule")
"""Scheduler settings with no safe default: the noise schedule the model was trained on."""
MAX_TRAIN_TIMESTEPS = 100_000
"""Checkpoints train on 1,000 noise levels; far more is a damaged config, refused before it allocates."""
LIBRARIES = ("diffusers", "transformers")
RESTORE = "restore it from the original checkpoint"
_HUB_NAME = r"[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?"
HUB_ID = re.compile(rf"{_HUB_NAME}/{_HUB_NAME}")
"""``org/name``: the only shape of ``--model`` looked up on the hub (``save_pretrained`` folders are
given as paths; a bare name or a longer path that does not exist is a missing folder)."""


@dataclass(frozen=True)
class Layout:
    """The files one kind of component is saved as."""

    config: str
    config_required: bool
    files: tuple[tuple[str, ...], ...]
    """Alternatives: every file of one of them must be there."""
    files_named: str
    """``files`` as the messages say it."""
    base: str
    """The ``library.Class`` a component of this kind derives from."""


DIFFUSERS_MODEL = Layout(
    "config.json", True,
    (("diffusion_pytorch_model.safetensors",), ("diffusion_pytorch_model.bin",),
     ("diffusion_pytorch_model.safetensors.index.json",), ("diffusion_pytorch_model.bin.index.json",)),
    "weights (diffusion_pytorch_model.safetensors or .bin, whole or sharded)", "diffusers.ModelMixin",
)
TRANSFORMERS_MODEL = Layout(
    "config.json", True,
    (("model.safetensors",), ("pytorch_model.bin",), ("model.safetensors.index.json",),
     ("pytorch_model.bin.index.json",)),
    "weights (model.safetensors or pytorch_model.bin, whole or sharded)", "transformers.PreTrainedModel",
)
TOKENIZER = Layout(
    "tokenizer_config.json", False, (("tokenizer.json",), ("vocab.json", "merges.txt")),
    "tokenizer files (tokenizer.json, or vocab.json and merges.txt)", "transformers.PreTrainedTokenizerBase",
)
SCHEDULER = Layout("scheduler_config.json", True, (), "", "diffusers.SchedulerMixin")
LAYOUTS: Mapping[str, Layout] = {
    "unet": DIFFUSERS_MODEL, "vae": DIFFUSERS_MODEL,
    "text_encoder": TRANSFORMERS_MODEL, "text_encoder_2": TRANSFORMERS_MODEL,
    "tokenizer": TOKENIZER, "tokenizer_2": TOKENIZER,
    "scheduler": SCHEDULER,
}
"""Each component a served family may need, by its name in ``model_index.json``."""


def short(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages about values read from files."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- where the checkpoint is ---------------------------------------------------------------------------------


PIPELINE_FOLDER = f"a pipeline folder written by save_pretrained ({INDEX} at its top)"
CLIP_FOLDER = "a CLIPModel folder written by save_pretrained (config.json at its top)"


def locate(model: str) -> Path:
    """The local folder ``model`` names: the folder itself, or a hub id's snapshot, fetched only when
    the hub answers. Anything else is refused at once (nothing is looked up for a path)."""
    return _local_folder(model, PIPELINE_FOLDER) or _hub_snapshot(model, PIPELINE_FOLDER, fetch=True)


def precheck(model: str, *, wanted: str = PIPELINE_FOLDER) -> None:
    """Refuse at once, before torch loads, a ``model`` that is neither an existing folder nor a hub
    checkpoint this machine can fetch or has cached: a path is never looked up, a hub id takes one
    look-up (``HUB_PROBE_TIMEOUT_S`` at most) and nothing is downloaded. ``wanted`` says what the folder
    should be."""
    if _local_folder(model, wanted) is None:
        _hub_snapshot(model, wanted, fetch=False)


def _local_folder(model: str, wanted: str) -> Path | None:
    """The folder ``model`` names, or ``None`` for a hub id (``org/name``) that is not a local path;
    refused at once: a file, or a path that does not exist and is not a hub id."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{model} is a file, not a folder; pass {wanted}")
    if not HUB_ID.fullmatch(model) or ".." in model or "--" in model:
        raise CheckpointError(f"{model}: no such folder; pass {wanted}, or a hub id of the form org/name")
    return None


@overload
def _hub_snapshot(repo_id: str, wanted: str, *, fetch: Literal[True]) -> Path: ...
@overload
def _hub_snapshot(repo_id: str, wanted: str, *, fetch: Literal[False]) -> Path | None: ...
def _hub_snapshot(repo_id: str, wanted: str, *, fetch: bool) -> Path | None:
    """The snapshot of a hub checkpoint: downloaded (``fetch``) when the hub answers one quick look-up,
    else the one in the local cache; else a refusal that says neither is there."""
    from huggingface_hub import constants

    problem = "HF_HUB_OFFLINE is set"
    if not constants.HF_HUB_OFFLINE:
        problem = _hub_problem(repo_id)
        if not problem:
            return _download(repo_id) if fetch else None
    cached = _cached_snapshot(repo_id)
    if cached is not None:
        logger.info("%s: using the snapshot in the local hub cache (%s)", repo_id, problem)
        return cached
    raise CheckpointError(
        f"{repo_id} is neither a local folder nor a hub checkpoint this machine can fetch ({problem}) or has cached; "
        f"pass {wanted}"
    )


def _hub_problem(repo_id: str) -> str:
    """Why the hub cannot serve ``repo_id`` (one request, no retries), or ``""``."""
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        huggingface_hub.model_info(repo_id, timeout=HUB_PROBE_TIMEOUT_S)
    except GatedRepoError:
        return "it is gated: accept its terms on the hub and log in with `hf auth login`"
    except RepositoryNotFoundError:
        return "the hub has no such model, or it is private"
    except Exception as exc:  # httpx connection and timeout errors, HTTP errors ...
        return f"the hub cannot be reached: {first_line(exc)}"
    return ""


def _download(repo_id: str) -> Path:
    from diffusers import DiffusionPipeline

    try:
        return Path(DiffusionPipeline.download(repo_id))
    except Exception as exc:  # huggingface_hub and diffusers raise OSError, HTTP and connection errors ...
        raise CheckpointError(f"{repo_id}: the download from the hub failed: {first_line(exc)}") from None


def _cached_snapshot(repo_id: str) -> Path | None:
    import huggingface_hub

    try:
        return Path(huggingface_hub.snapshot_download(repo_id, local_files_only=True))
    except Exception:  # LocalEntryNotFoundError and anything else mean: not usable from the cache
        return None


# --- what the folder holds -----------------------------------------------------------------------------------


def read_json_object(path: Path, *, label: str, component: str) -> dict:
    """A config file as a dict, or one line: which file of ``label`` is missing, unreadable or not an object."""
    name = f"{component}/{path.name}" if component else path.name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{label}: {name} is missing; {RESTORE}") from None
    except OSError as exc:
        raise CheckpointError(f"{label}: {name} cannot be read ({exc.strerror or exc}); check the file") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{label}: {name} is not UTF-8 text (byte {exc.start}); {RESTORE}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:  # ValueError: also numbers too long to convert
        raise CheckpointError(
            f"{label}: {name} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); {RESTORE}"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"{label}: {name} is not valid JSON ({first_line(exc)}); {RESTORE}") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{label}: {name} holds a JSON {_json_kind(value)}, not an object; {RESTORE}")
    return value


def read_index(folder: Path, *, label: str) -> dict:
    if not (folder / INDEX).is_file():
        raise CheckpointError(
            f"cannot load a Stable Diffusion pipeline from {label}: it has no {INDEX}. Pass a folder written by "
            "save_pretrained or a hub id this machine can reach; `ppo-export --preset tiny` needs neither."
        )
    return read_json_object(folder / INDEX, label=label, component="")


def check(
    folder: Path, index: Mapping, components: tuple[str, ...], *, label: str, scheduler_replaced: bool = False
) -> dict[str, tuple[str, str]]:
    """Every component in ``components`` is listed, present and readable; returns ``name -> (library, class)``.
    With ``scheduler_replaced`` (``--scheduler``) the checkpoint's own scheduler class may be one
    diffusers lacks: only its settings are used."""
    pipeline_class = index.get("_class_name")
    found = {}
    for name in components:
        library, class_name = _entry(index, name, label=label, pipeline_class=pipeline_class, components=components)
        layout = LAYOUTS[name]
        where = folder / name
        if not where.is_dir():
            raise CheckpointError(
                f"{label}: the {name}/ folder is missing ({INDEX} lists {name}); copy it from the original checkpoint"
            )
        config = {}
        if layout.config_required or (where / layout.config).exists():
            config = read_json_object(where / layout.config, label=label, component=name)
        if layout.files and not any(all((where / f).is_file() for f in files) for files in layout.files):
            raise CheckpointError(
                f"{label}: {name}/ has no {_files_wanted(layout, where)}; copy them from the original checkpoint"
            )
        if layout is SCHEDULER:
            _check_scheduler(config, class_name, label=label, replaced=scheduler_replaced)
        found[name] = (library, class_name)
    return found


def _entry(index: Mapping, name: str, *, label: str, pipeline_class, components) -> tuple[str, str]:
    entry = index.get(name)
    if entry is None or (isinstance(entry, list) and entry == [None, None]):
        raise CheckpointError(
            f"{label}: {INDEX} lists no {name}, which a {pipeline_class} needs (it needs {', '.join(components)}); "
            "export the complete checkpoint"
        )
    if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(part, str) and part for part in entry)):
        raise CheckpointError(f"{label}: {INDEX} gives {name} as {short(entry)}, not [library, class]; {RESTORE}")
    library, class_name = entry
    if library not in LIBRARIES:
        raise CheckpointError(
            f"{label}: {INDEX} says {name} is {library}.{class_name}; ppo-export loads {name} from "
            f"{' or '.join(LIBRARIES)} only"
        )
    return library, class_name


def _files_wanted(layout: Layout, where: Path) -> str:
    others = sorted(p.name for p in where.iterdir() if p.suffix in (".safetensors", ".bin"))
    also = f" (it has only {', '.join(others)}, which ppo-export does not load)" if others else ""
    return layout.files_named + also


def _check_scheduler(config: Mapping, indexed: str, *, label: str, replaced: bool) -> None:
    """The scheduler's class is one diffusers has (unless ``--scheduler`` replaces it), and its config
    states the noise schedule, which no default can stand in for."""
    where = f"{label}: scheduler/scheduler_config.json"
    if not replaced:
        _check_scheduler_class(indexed, f"{label}: {INDEX}'s scheduler entry")
        _check_scheduler_class(config.get("_class_name"), f"{where}: its _class_name")
    trained = config.get("trained_betas")
    missing = [key for key in NOISE_SCHEDULE if key not in config]
    if missing and not (isinstance(trained, list) and trained):
        raise CheckpointError(
            f"{where} does not give the noise schedule the model was trained on ({', '.join(missing)} missing); "
            f"{RESTORE} (no default can stand in for it)"
        )
    problem = _noise_schedule_problem(config)
    if problem:
        raise CheckpointError(f"{where}: {problem}; {RESTORE}")


def _noise_schedule_problem(config: Mapping) -> str:
    """What is wrong with the types and sizes of the noise schedule's settings (a count of steps in the
    billions would allocate gigabytes before any check of the scheduler's own), or ``""``."""
    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    steps = config.get("num_train_timesteps", 1000)
    if not (isinstance(steps, int) and not isinstance(steps, bool) and 1 <= steps <= MAX_TRAIN_TIMESTEPS):
        return f"num_train_timesteps is {short(steps)}, not a whole number from 1 to {MAX_TRAIN_TIMESTEPS}"
    trained = config.get("trained_betas")
    if trained is not None:
        if not (isinstance(trained, list) and 0 < len(trained) <= MAX_TRAIN_TIMESTEPS and all(map(number, trained))):
            return f"trained_betas is {short(trained)}, not a non-empty list of numbers"
        return ""
    for key in ("beta_start", "beta_end"):
        if not (number(config[key]) and 0 <= config[key] < 1):
            return f"{key} is {short(config[key])}, not a number from 0 to 1"
    if not isinstance(config["beta_schedule"], str):
        return f"beta_schedule is {short(config['beta_schedule'])}, not the name of a schedule"
    return ""


def _check_scheduler_class(class_name: object, where: str) -> None:
    import diffusers

    try:
        known = isinstance(class_name, str) and issubclass(scheduler_class(class_name), diffusers.SchedulerMixin)
    except (ValueError, TypeError):  # scheduler_class refuses unknown names; issubclass a non-class
        known = False
    if not known:
        supported = ", ".join(dict.fromkeys(spec.class_name for spec in SPECS.values()))
        named = "is missing" if class_name is None else (
            f"names the scheduler class {short(class_name)}, which diffusers does not have"
        )
        raise CheckpointError(
            f"{where} {named}; supported: {supported} (name one there, or replace it with --scheduler, "
            f"e.g. --scheduler {contract.SCHEDULERS[0]})"
        )


# --- each component, loaded on its own ----------------------------------------------------------------------


def load_component(folder: Path, name: str, library: str, class_name: str, *, label: str):
    """One model or tokenizer, refused in one line when its class is unknown, its files do not load or
    its weights do not fill its config's tensors (the libraries would initialise the rest at random)."""
    import torch

    layout = LAYOUTS[name]
    module = importlib.import_module(library)
    base_library, _, base_name = layout.base.partition(".")
    base = getattr(importlib.import_module(base_library), base_name)
    cls: type[Any] | None  # what the module holds under that name is checked below
    try:
        cls = getattr(module, class_name)
    except (AttributeError, ImportError):  # transformers' lazy module raises either
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise CheckpointError(
            f"{label}: {INDEX} says {name} is a {library}.{class_name}, which is not a {layout.base} "
            f"of the installed {library}; {RESTORE}"
        )
    what = f"{label}: cannot load the {name} ({class_name}) from {name}/"
    try:
        if layout is TOKENIZER:
            return cls.from_pretrained(folder / name)
        extra = {"ignore_mismatched_sizes": True} if library == "transformers" else {}
        component, report = cls.from_pretrained(folder / name, dtype=torch.float32, output_loading_info=True, **extra)
    except Exception as exc:  # diffusers, transformers and torch raise OSError, ValueError, RuntimeError ...
        raise CheckpointError(f"{what}: {_load_problem(exc)}") from None
    problem = _weights_problem(report)
    if problem:
        raise CheckpointError(f"{what}: {problem}")
    return component


SHAPE_MISMATCH = re.compile(
    r"size mismatch for (\S+): copying a param with shape torch\.Size\((\[.*?\])\) from checkpoint, "
    r"the shape in current model is torch\.Size\((\[.*?\])\)"
)
"""How torch's ``load_state_dict`` reports one tensor whose shape differs (diffusers passes it on)."""


def _load_problem(exc: BaseException) -> str:
    mismatches = SHAPE_MISMATCH.findall(str(exc))
    if mismatches:
        return _mismatch_line(mismatches)
    return first_line(exc)


def _weights_problem(report: Mapping) -> str:
    """What a loading report says is wrong: tensors of another shape, or tensors the weights lack."""
    mismatched = [(key, list(saved), list(wanted)) for key, saved, wanted in report.get("mismatched_keys") or ()]
    if mismatched:
        return _mismatch_line(sorted(mismatched))
    missing = sorted(report.get("missing_keys") or ())
    if missing:
        return (f"its weights lack {len(missing)} tensor(s) its config.json asks for (first: {missing[0]}), which "
                "would be random; copy its weights from the original checkpoint")
    return ""


def _mismatch_line(mismatches) -> str:
    key, saved, wanted = mismatches[0]
    return (f"its config.json does not match its weights: {len(mismatches)} tensor(s) differ in shape "
            f"(first: {key} is {saved} in the weights, {wanted} by the config); restore the config.json its "
            "weights were saved with")


def load_scheduler(folder: Path, indexed: str, name: str, *, label: str):
    """The checkpoint's own scheduler (the class ``model_index.json`` lists, with its config), or the
    one ``name`` builds from that config (from the saved settings alone when the own class is unknown)."""
    config = read_json_object(folder / "scheduler" / SCHEDULER.config, label=label, component="scheduler")
    what = f"{label}: cannot build the scheduler from scheduler/{SCHEDULER.config}"
    try:
        own = scheduler_class(indexed).from_config(config)
    except ValueError as exc:
        if not name:  # check refused unknown classes already; a bad setting lands here
            raise CheckpointError(f"{what}: {first_line(exc)}") from None
        own = None
    except Exception as exc:  # a setting the class refuses: NotImplementedError, TypeError ...
        raise CheckpointError(f"{what}: {type(exc).__name__}: {first_line(exc)}") from None
    if not name:
        return own
    try:
        return build_scheduler(name, own.config if own is not None else config)
    except Exception as exc:
        raise CheckpointError(f"{what} for --scheduler {name}: {type(exc).__name__}: {first_line(exc)}") from None


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first non-empty line of an exception's message (its type when it has none), cut to ``limit``."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"
