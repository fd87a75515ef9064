"""Flags that several commands share, each defined once: the Triton server, the user store, the LLM
endpoint and the shape of an optimization run (whose defaults are read from ``RunConfig``)."""

from __future__ import annotations

import argparse

from ppo_client.llm.chat import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, TIMEOUT_ENV, ChatConfig
from ppo_client.optimize.config import KEYWORD_SCREEN, LLM_SCREEN, Optimizer, RunConfig, SubjectAnchor
from ppo_client.triton import DEFAULT_URL, URL_ENV

STORE_HELP = "user store: a file path (SQLite) or postgresql://user@host:port/db (default: $PPO_STORE or the user data dir)"


def add_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=None,
        help=f"Triton server(s): host:port (gRPC) or http://host:port, several comma-separated; default ${URL_ENV} or {DEFAULT_URL}",
    )


def add_store(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", default=None, help=STORE_HELP)


def add_llm(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--llm-url",
                        help="OpenAI-compatible base URL ending in /v1 (default $OPENAI_BASE_URL; none: a local LLM is started)")
    parser.add_argument("--llm-model", help="model name (default $PPO_LLM_MODEL)")
    parser.add_argument("--llm-api-key", help="API key (default $OPENAI_API_KEY; never written to the run folder)")
    parser.add_argument("--vision", action="store_true", help="the endpoint's model accepts images (needed by s+p+f+I)")
    parser.add_argument("--text-fallback", action="store_true", help="with a text-only endpoint, run s+p+f+I as s+p+f")
    parser.add_argument(
        "--llm-timeout", type=float, default=None,
        help=f"seconds one LLM call may take, retries included (default ${TIMEOUT_ENV} or {DEFAULT_TIMEOUT_S:g})",
    )
    parser.add_argument("--llm-retries", type=int, default=DEFAULT_RETRIES,
                        help="retries of a failed LLM call (default %(default)s)")


def chat_config(args: argparse.Namespace) -> ChatConfig:
    """The LLM settings of ``optimize``, ``experiment`` and ``app`` (flags first, then the environment)."""
    return ChatConfig.from_env(args.llm_url, args.llm_api_key, args.llm_model, timeout_s=args.llm_timeout,
                               max_retries=args.llm_retries, vision=args.vision)


def add_run_shape(parser: argparse.ArgumentParser) -> None:
    default = RunConfig()  # the defaults live in one place: the run's configuration
    parser.add_argument("--iterations", type=int, default=default.iterations,
                        help="iterations after the initial one (default %(default)s)")
    parser.add_argument("--n-prompts", type=int, default=default.n_prompts,
                        help="prompts per iteration (N, default %(default)s)")
    parser.add_argument("--seeds", type=int, default=default.seeds,
                        help="seeds per prompt, fixed for the run (M, default %(default)s)")
    parser.add_argument("--steps", type=int, default=default.steps, help="denoising steps per image (default %(default)s)")
    parser.add_argument("--guidance", type=float, default=default.guidance_scale,
                        help="classifier-free guidance scale (default %(default)s; the demo model follows prompts best at 3)")
    parser.add_argument("--seed", type=int, default=default.seed)
    parser.add_argument(
        "--subject-guard", type=float, default=default.subject_guard,
        help="drop rewrites whose CLIP text similarity to the initial prompt is below this (0: off; default %(default)s)",
    )
    parser.add_argument(
        "--no-structured-output", dest="structured_output", action="store_false", default=default.structured_output,
        help="never ask the LLM endpoint for replies constrained to a JSON schema (default: ask, in the dialect it honours)",
    )
    parser.add_argument(
        "--screen", type=int, default=None, metavar="K",
        help="propose K x N prompts and render the N whose predicted score (the user's head on their CLIP text "
             f"embedding, calibrated on this run's renders) is best; 0: off (default {KEYWORD_SCREEN} for ga and random, "
             f"{LLM_SCREEN} for llm and mix, whose every candidate is an LLM generation)",
    )
    parser.add_argument(
        "--explore", type=float, default=default.exploration, metavar="BETA",
        help="the screen renders the best mean + BETA x sd of the predicted score, with a diversity penalty inside "
             "each batch; 0: the best predicted (default %(default)s)",
    )
    parser.add_argument(
        "--preview-steps", type=int, default=default.preview_steps, metavar="S",
        help="preview the screen's shortlist at S denoising steps (same pipeline and seeds) and render in full the N "
             "whose previews the user's head scores best; 0: off (default %(default)s)",
    )
    parser.add_argument("--preview", type=int, default=default.preview, metavar="P",
                        help="with --preview-steps, preview P x N candidates (default %(default)s)")
    parser.add_argument("--preview-scheduler", default=default.preview_scheduler, metavar="NAME",
                        help="the previews' scheduler ('': the pipeline's own, as the full renders; default %(default)s)")
    parser.add_argument(
        "--unet-budget", type=int, default=default.unet_budget, metavar="E",
        help="stop before an iteration that would take the run over E UNet evaluations (steps x images, x2 with "
             "guidance; previews included); 0: --iterations alone decides (default %(default)s)",
    )
    parser.add_argument(
        "--subject-anchor", choices=[a.value for a in SubjectAnchor], default=default.subject_anchor.value,
        help="with structured output, make each LLM prompt start with the subject, then comma-separated phrases "
             "(auto: on for the embedded LLM only; default %(default)s)",
    )


def screen_for(args: argparse.Namespace, optimizer: Optimizer | str) -> int:
    """``--screen``, or the optimizer's own default where it was not given."""
    return args.screen if args.screen is not None else Optimizer(optimizer).default_screen


def run_shape(args: argparse.Namespace) -> RunConfig:
    """The run flags shared by ``optimize`` and ``experiment`` (the screen: the default optimizer's
    where ``--screen`` was not given; callers that know the optimizer use ``screen_for``)."""
    return RunConfig(iterations=args.iterations, n_prompts=args.n_prompts, seeds=args.seeds, steps=args.steps,
                     seed=args.seed, subject_guard=args.subject_guard, guidance_scale=args.guidance,
                     structured_output=args.structured_output, subject_anchor=args.subject_anchor,
                     screen=screen_for(args, RunConfig().optimizer),
                     exploration=args.explore, preview_steps=args.preview_steps, preview=args.preview,
                     preview_scheduler=args.preview_scheduler, unet_budget=args.unet_budget)
