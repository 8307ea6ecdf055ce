"""Command-line interface. Thin: parse options, call the library, print with rich.

Heavy imports (torch, transformers, sae-lens) happen inside commands so `--help` stays instant.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from saefilter.config import DEFAULT_FEATURES, DEFAULT_SAE, ScoreConfig
from saefilter.model import DEFAULT_MODEL

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

app = typer.Typer(
    help="Score fine-tuning data by how close its SAE features lie to harmful features, and prune it.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()

ModelOpt = Annotated[
    str, typer.Option("--model", "-m", help="Hugging Face model id or local folder; default: the embedded SmolLM2-135M-Instruct.")
]
SaeOpt = Annotated[
    str,
    typer.Option(
        "--sae",
        help="SAE folder written by sae-lens SAE.save_model, or RELEASE/SAE_ID from the sae-lens registry "
        "(e.g. gemma-scope-2b-pt-res-canonical/layer_12/width_16k/canonical). Default: the embedded SAE.",
    ),
]
FeaturesOpt = Annotated[
    str, typer.Option("--features", "-f", help="JSON file of harmful SAE feature indices (with optional label, weight).")
]
TokensOpt = Annotated[
    str,
    typer.Option(
        "--tokens",
        help="response: score only the tokens SFT trains on (assistant turns; all of a plain-text record). "
        "all: every token, prompt included.",
    ),
]
AggOpt = Annotated[str, typer.Option("--aggregation", "-a", help="How a feature's activations combine over tokens: max or mean.")]
NeighboursOpt = Annotated[int, typer.Option("--neighbours", "-k", help="Harmful directions averaged per feature (kNN in FAISS).")]
MaxTokensOpt = Annotated[int, typer.Option("--max-tokens", help="Truncate each record to this many tokens (from the right, like SFT).")]
FieldOpt = Annotated[Optional[str], typer.Option("--field", help="Read the text or messages from this key instead of auto-detecting.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when available), cpu or cuda.")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="Model dtype: auto (float32 on CPU, bfloat16 on CUDA), float32, bfloat16, float16.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", "-b", help="Most records per forward pass.")]
BatchTokensOpt = Annotated[int, typer.Option("--batch-tokens", help="Most padded tokens per forward pass.")]
OnErrorOpt = Annotated[
    str,
    typer.Option(
        "--on-error",
        help="fail: stop at the first bad line (checked before scoring starts). skip: set bad lines aside in "
        "<stem>.skipped.jsonl with the reason.",
    ),
]
TrustOpt = Annotated[bool, typer.Option("--trust-remote-code", help="Allow the model repository's own Python code to run.")]


def fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        fail(f"{name} must be one of {', '.join(choices)}, got {value!r}")


@app.command()
def score(
    data: Annotated[Path, typer.Argument(help="Dataset: .jsonl or .jsonl.gz (chat messages, prompt/completion, Alpaca or text).")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Score file; default <stem>.scores.jsonl next to the input.")] = None,
    model: ModelOpt = DEFAULT_MODEL,
    sae: SaeOpt = DEFAULT_SAE,
    features: FeaturesOpt = DEFAULT_FEATURES,
    tokens: TokensOpt = "response",
    aggregation: AggOpt = "max",
    neighbours: NeighboursOpt = 1,
    max_tokens: MaxTokensOpt = 1024,
    field: FieldOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    batch_size: BatchOpt = 16,
    batch_tokens: BatchTokensOpt = 8192,
    on_error: OnErrorOpt = "fail",
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its checkpoint.")] = False,
    trust_remote_code: TrustOpt = False,
) -> None:
    """Score every record by the proximity of its SAE features to the harmful features; write a ranked score file."""
    check_choice("--tokens", tokens, ("response", "all"))
    check_choice("--aggregation", aggregation, ("max", "mean"))
    check_choice("--on-error", on_error, ("fail", "skip"))
    config = ScoreConfig(
        model=model, sae=sae, features=features, tokens=tokens, aggregation=aggregation,  # type: ignore[arg-type]
        neighbours=neighbours, max_tokens=max_tokens, field=field, device=device, dtype=dtype,
        batch_size=batch_size, batch_tokens=batch_tokens, on_error=on_error,  # type: ignore[arg-type]
        trust_remote_code=trust_remote_code,
    )
    from saefilter.terminal import print_score_summary, score_progress

    summary = run_with_errors(lambda: _score_with_progress(data, config, output, resume, score_progress))
    print_score_summary(out, summary)


def _score_with_progress(data, config, output, resume, score_progress):
    from saefilter.pipeline import score_file
    from saefilter.scorer import Scorer

    with console.status("loading model, SAE and features..."):
        scorer = Scorer.load(config)
    with score_progress(console) as (on_start, on_progress):
        return score_file(data, config, output, resume, scorer, on_start, on_progress)


def run_with_errors(action):
    """Turn the library's input errors into one-line messages; Ctrl-C into a resume hint."""
    from saefilter.records import InputError

    try:
        return action()
    except InputError as err:
        fail(str(err))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted.[/] Completed chunks are checkpointed: rerun the same command with --resume.")
        raise typer.Exit(130) from None


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
