"""Command-line interface. Thin: parse options, call the library, print with rich.

Heavy imports (torch, transformers, sae-lens) happen inside commands so `--help` stays instant.
"""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from saefilter.drift.settings import DriftSettings
from saefilter.features.settings import (
    BUILD_MAX_TOKENS,
    BUILTIN_CONTRASTS,
    DEFAULT_CONTRASTS,
    DEFAULT_TOP_EACH,
    SelectionSettings,
)
from saefilter.model.loading import DEFAULT_MODEL
from saefilter.scoring.config import DEFAULT_FEATURES, DEFAULT_KERNEL, DEFAULT_SAE, ScoreConfig

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

app = typer.Typer(
    help="Score fine-tuning data by how close its SAE features lie to harmful features, and prune it.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)  # status lines, progress bars, errors
out = Console()  # results and summaries; silenced by --quiet
essential = Console()  # what a command exists to print (check's findings, `features show`): never silenced

QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors (and what the command exists to print, e.g. check's findings).")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Also show the logs and progress bars of transformers and the hub (when a model will not load).")]


def set_verbosity(quiet: bool, verbose: bool) -> None:
    """--quiet silences our status lines, bars and summaries; --verbose lets third-party output through."""
    if quiet and verbose:
        fail("--quiet and --verbose contradict each other; give one")
    from saefilter.quiet import show_third_party_output

    console.quiet = out.quiet = quiet
    show_third_party_output(verbose)


def _print_version(value: bool) -> None:
    if value:
        from saefilter.version import __version__

        out.print(f"saefilter {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """saefilter: find fine-tuning samples whose SAE features sit close to harmful features (Minegishi et al. 2026)."""


ModelOpt = Annotated[
    str, typer.Option("--model", "-m", help="A named model (`saefilter models`), a .gguf file, a local folder or a Hugging Face id; "
                                           "default: the embedded SmolLM2-135M-Instruct.")
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
HardNegativesOpt = Annotated[list[str], typer.Option("--hard-negatives", help="Benign text about the dark topics harm comes with (war, overdose, scams, grief), counted as benign by the direction's probe only: 'builtin' (the default with the built-in answers contrast), 'none' (the default with --harmful/--benign files), or file(s).")]
NeighboursOpt = Annotated[int, typer.Option("--neighbours", "-k", help="Harmful directions averaged per feature (kNN in FAISS).")]
KernelOpt = Annotated[str, typer.Option("--kernel", help="Proximity of a cosine c: linear max(0,c); excess: above the SAE's background cosine; sq-excess: its square.")]
MaxTokensOpt = Annotated[int, typer.Option("--max-tokens", help="Truncate each record to this many tokens (from the right, like SFT).")]
FieldOpt = Annotated[str | None, typer.Option("--field", help="Read the text or messages from this key instead of auto-detecting.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when available), cpu or cuda.")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="Model dtype: auto, float32, bfloat16, float16. auto: bfloat16 on CUDA; on a CPU, bfloat16 where the CPU runs it natively (AVX512-BF16, AMX) and the model's bfloat16 scores were measured to agree (the embedded default), else float32.")]
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
StrictOpt = Annotated[bool, typer.Option("--strict", help="Refuse evaluation rows that copy or share a 13-word passage with rows the feature set was built or chosen on (default: a warning naming them).")]


def fail(message: str) -> None:
    console.quiet = False  # errors always show
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)  # messages quote user text verbatim
    raise typer.Exit(2)


def cli_progress(label: str, total: int):
    """A progress bar on stderr: what the runs take as their `progress` factory."""
    from saefilter.terminal import count_progress

    return count_progress(console, label, total)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        fail(f"{name} must be one of {', '.join(choices)}, got {value}")


def make_config(options: dict) -> ScoreConfig:
    """A checked ScoreConfig from a command's options (its locals())."""
    return run_with_errors(lambda: ScoreConfig.from_options(options))


@app.command()
def score(
    data: Annotated[str, typer.Argument(help="Dataset: .jsonl, .jsonl.gz or .parquet (chat messages, prompt/completion, Alpaca or text). "
                                        "With --engine ray, also a URI such as s3://bucket/data.jsonl.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Score file; default <stem>.scores.jsonl next to the input.")] = None,
    model: ModelOpt = DEFAULT_MODEL,
    sae: SaeOpt = DEFAULT_SAE,
    features: FeaturesOpt = DEFAULT_FEATURES,
    tokens: TokensOpt = ScoreConfig.tokens,
    aggregation: AggOpt = ScoreConfig.aggregation,
    neighbours: NeighboursOpt = ScoreConfig.neighbours,
    kernel: KernelOpt = DEFAULT_KERNEL,
    max_tokens: MaxTokensOpt = ScoreConfig.max_tokens,
    field: FieldOpt = None,
    device: DeviceOpt = ScoreConfig.device,
    dtype: DtypeOpt = ScoreConfig.dtype,
    batch_size: BatchOpt = ScoreConfig.batch_size,
    batch_tokens: BatchTokensOpt = ScoreConfig.batch_tokens,
    on_error: OnErrorOpt = ScoreConfig.on_error,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its checkpoint.")] = False,
    chunk_records: Annotated[int, typer.Option("--checkpoint-every", help="Records per checkpointed chunk (also the length-sorting window).")] = ScoreConfig.chunk_records,
    shard: Annotated[str | None, typer.Option("--shard", help="Score only shard I of N (I/N): blocks of --checkpoint-every records dealt round-robin; join with `saefilter merge`.")] = None,
    engine: Annotated[str, typer.Option("--engine", help="local: this process. ray: a Ray Data actor pool (pip install 'saefilter\\[ray]'); same score file.")] = "local",
    ray_address: Annotated[str | None, typer.Option("--ray-address", help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray).")] = None,
    ray_actors: Annotated[int | None, typer.Option("--ray-actors", help="Scoring actors, each loading the model once (default: one per GPU, else one per node).")] = None,
    trust_remote_code: TrustOpt = ScoreConfig.trust_remote_code,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Score every record by the proximity of its SAE features to the harmful features; write a ranked score file."""
    set_verbosity(quiet, verbose)
    config = make_config(locals())
    from saefilter.outputs.score_files import Shard
    from saefilter.terminal import print_score_summary, score_progress

    check_choice("--engine", engine, ("local", "ray"))
    if engine == "ray":
        if shard or resume:
            fail("--shard and --resume belong to the local engine; with --engine ray, Ray splits the work itself")
        summary = run_with_errors(lambda: _score_with_ray(data, config, output, ray_address, ray_actors, score_progress))
        print_score_summary(out, summary)
        return
    if "://" in data:
        fail(f"{data}: remote inputs need --engine ray; the local engine reads local files")
    shard_spec = run_with_errors(lambda: Shard.parse(shard, config.chunk_records)) if shard else None
    result = run_with_errors(lambda: _score_with_progress(Path(data), config, output, resume, score_progress, shard_spec))
    if shard_spec is not None:
        out.print(f"shard {shard} -> {result}\njoin all shards with: saefilter merge {data}")
    else:
        print_score_summary(out, result)


def _score_with_progress(data, config, output, resume, score_progress, shard=None):
    """Every line is checked with the tokenizer alone (--on-error fail), then the model loads, then
    the bar runs: one status line of ours per slow step, no third-party bars."""
    from saefilter.runs.pipeline import score_file

    with score_progress(console) as (on_start, on_progress):
        return score_file(data, config, output, resume, None, on_start, on_progress, shard, status=console.status)


def _score_with_ray(data, config, output, address, actors, score_progress):
    from saefilter.runs.ray_engine import RayOptions, score_with_ray

    with score_progress(console) as (on_start, on_progress):
        console.print("starting Ray and the scoring actors (each loads the model once)...")
        return score_with_ray(data, config, output, RayOptions(address, actors), on_start, on_progress)


@app.command()
def merge(
    data: Annotated[Path, typer.Argument(help="The dataset the shards were scored from.")],
    shards: Annotated[list[Path], typer.Option("--shard-file", help="Shard files; default: every <stem>.scores.shard-I-of-N.jsonl next to the output.")] = [],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Score file; default <stem>.scores.jsonl next to the input.")] = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Join the shard files of `score --shard I/N` into one ranked score file, identical to a single-process run."""
    set_verbosity(quiet, verbose)
    from saefilter.runs.merge import find_shards, merge_shards
    from saefilter.terminal import print_score_summary

    summary = run_with_errors(lambda: merge_shards(data, shards or find_shards(data, output), output))
    print_score_summary(out, summary)


@app.command()
def prune(
    data: Annotated[Path, typer.Argument(help="The dataset that was (or will be) scored.")],
    top_k: Annotated[int | None, typer.Option("--top-k", help="Remove the N highest-scoring records.")] = None,
    fraction: Annotated[float | None, typer.Option("--fraction", help="Remove this share of records (the paper removed 0.5).")] = None,
    threshold: Annotated[float | None, typer.Option("--threshold", help="Remove every record scoring at or above T.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random-removal baseline.")] = 20260522,
    out_dir: Annotated[Path | None, typer.Option("--output-dir", "-o", help="Folder for the outputs; default: next to the input.")] = None,
    scores: Annotated[Path | None, typer.Option("--scores", help="Score file to use; default <stem>.scores.jsonl next to the input.")] = None,
    rescore: Annotated[bool, typer.Option("--rescore", help="Score again even if a matching score file exists.")] = False,
    judge: Annotated[str | None, typer.Option("--judge", help="Also write <stem>.judge.jsonl: the input minus as many rows as this chat model, asked as an LLM judge, ranks most harmful (anything --model takes).")] = None,
    model: ModelOpt = DEFAULT_MODEL,
    sae: SaeOpt = DEFAULT_SAE,
    features: FeaturesOpt = DEFAULT_FEATURES,
    tokens: TokensOpt = ScoreConfig.tokens,
    aggregation: AggOpt = ScoreConfig.aggregation,
    neighbours: NeighboursOpt = ScoreConfig.neighbours,
    kernel: KernelOpt = DEFAULT_KERNEL,
    max_tokens: MaxTokensOpt = ScoreConfig.max_tokens,
    field: FieldOpt = None,
    device: DeviceOpt = ScoreConfig.device,
    dtype: DtypeOpt = ScoreConfig.dtype,
    batch_size: BatchOpt = ScoreConfig.batch_size,
    batch_tokens: BatchTokensOpt = ScoreConfig.batch_tokens,
    on_error: OnErrorOpt = ScoreConfig.on_error,
    trust_remote_code: TrustOpt = ScoreConfig.trust_remote_code,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Write the pruned dataset, the removed records and a same-size random-removal baseline.

    Reuses <stem>.scores.jsonl when it was made from this input with this configuration (checked by
    hash), so one scoring pass serves many cut-offs.
    """
    set_verbosity(quiet, verbose)
    config = make_config(locals())
    from saefilter.outputs.prune import Cutoff
    from saefilter.runs.prune import prune as run_prune
    from saefilter.terminal import count_progress, print_prune_summary, score_progress

    cutoff = Cutoff(top_k, fraction, threshold)
    run_with_errors(cutoff.validate)
    result = run_with_errors(lambda: run_prune(
        data, config, cutoff, seed, out_dir, scores, rescore, judge,
        run_scoring=lambda: _score_with_progress(data, config, scores, False, score_progress).outputs.scores,
        judge_progress=lambda total: count_progress(console, f"judge {judge}", total),
        on_reuse=lambda path: console.print(f"reusing {path} (same input and configuration)"),
    ))
    print_prune_summary(out, result)


@app.command()
def check(
    files: Annotated[list[Path], typer.Argument(help="JSONL files to check (a pre-commit hook passes the staged ones).")],
    threshold: Annotated[float | None, typer.Option("--threshold", "-t", help="Block records scoring at or above T; default: the setting, else the feature set's calibrated threshold.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Overrides the setting; default: the embedded model.")] = None,
    sae: Annotated[str | None, typer.Option("--sae", help="Overrides the setting; default: the embedded SAE.")] = None,
    features: Annotated[str | None, typer.Option("--features", "-f", help="Overrides the setting; default: the embedded feature set.")] = None,
    aggregation: Annotated[str | None, typer.Option("--aggregation", "-a", help="max or mean; overrides the setting.")] = None,
    tokens: Annotated[str | None, typer.Option("--tokens", help="response or all; overrides the setting.")] = None,
    field: FieldOpt = None,
    cache: Annotated[Path | None, typer.Option("--cache", help="Score cache (SQLite); default: in the user cache dir.")] = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Exit 1 and list file:line, score and why (top latent, tokens) of every record above the threshold; 0 otherwise.

    Settings: [tool.saefilter] in pyproject.toml, or saefilter.toml (keys: model, sae, features, threshold,
    aggregation, tokens, neighbours, max_tokens, field). Flags override them.
    """
    set_verbosity(quiet, verbose)
    from saefilter.model.named import cache_dir
    from saefilter.runs.check import ScoreCache, check_files, find_settings, merge_settings, suggested_threshold
    from saefilter.terminal import print_finding

    def run():
        settings, source = find_settings(Path.cwd())
        flags = {"model": model, "sae": sae, "features": features, "aggregation": aggregation, "tokens": tokens,
                 "field": field, "threshold": threshold}
        config, limit = merge_settings(settings, flags, source)
        limit = limit if limit is not None else suggested_threshold(config)
        if limit is None:
            from saefilter.errors import InputError

            raise InputError("no threshold: pass --threshold or set `threshold` in [tool.saefilter]")
        score_cache = ScoreCache(cache or cache_dir() / "check-cache.sqlite3")
        return check_files(files, config, limit, score_cache), limit

    result, limit = run_with_errors(run)
    for message in result.errors:
        essential.print(f"{message}", highlight=False)
    for finding in result.findings:
        print_finding(essential, finding)
    verdict = "blocked" if (result.findings or result.errors) else "ok"
    console.print(
        f"saefilter check: {len(result.findings)} of {result.n_records} above {limit:g}, "
        f"{len(result.errors)} unreadable ({result.n_cached} cached): {verdict}"
    )
    if result.findings or result.errors:
        raise typer.Exit(1)


@app.command()
def report(
    scores: Annotated[Path, typer.Argument(help="A <stem>.scores.jsonl file written by `saefilter score`.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="HTML file; default <stem>.report.html next to the scores.")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="The scored dataset, if it moved since scoring.")] = None,
    top: Annotated[int, typer.Option("--top", "-n", help="How many flagged samples to show.")] = 25,
    fraction: Annotated[float, typer.Option("--fraction", help="Draw the cut-off that removes this share of records.")] = 0.5,
    threshold: Annotated[float | None, typer.Option("--threshold", help="Draw this score cut-off instead of --fraction.")] = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Write a self-contained HTML report (and a PNG histogram) of a score file."""
    set_verbosity(quiet, verbose)
    from saefilter.outputs.report import write_report

    target = output or scores.with_name(scores.name.replace(".scores.jsonl", "") + ".report.html")
    if not scores.is_file():
        fail(f"{scores}: no such file")
    html_path, png_path, summary = write_report(scores, target, data, top, fraction, threshold)
    from saefilter.terminal import print_report_summary

    print_report_summary(out, summary)
    out.print(f"report -> {html_path}\nplot   -> {png_path}")


@app.command("eval")
def evaluate(
    positive: Annotated[list[Path], typer.Option("--positive", "-P", help="Samples that should be removed (e.g. misalignment-inducing); any reference format.")] = [],
    negative: Annotated[list[Path], typer.Option("--negative", "-N", help="Samples that should be kept.")] = [],
    data: Annotated[Path | None, typer.Option("--data", help="One JSONL file with a label column, instead of --positive/--negative.")] = None,
    labels: Annotated[str | None, typer.Option("--labels", help="Label key in --data records (truthy = positive).")] = None,
    pairs: Annotated[Path | None, typer.Option("--pairs", help="Matched pairs, one per line: {\"prompt\", \"harmful\", \"benign\"} or {\"chosen\", \"rejected\"} (rejected = harmful). Adds pairwise accuracy.")] = None,
    anchors: Annotated[list[Path], typer.Option("--anchors", help="Harmful anchor examples for the representation-matching baseline.")] = [],
    limit: Annotated[int | None, typer.Option("--limit", help="Evaluate a seeded random subsample of at most N per class (N pairs with --pairs).")] = None,
    neighbours_list: Annotated[str, typer.Option("--neighbours-list", help="Comma-separated k values to compare.")] = "1,5",
    feature_counts: Annotated[str | None, typer.Option("--feature-counts", help="Comma-separated numbers of top features to compare (default: all).")] = None,
    kernels: Annotated[str, typer.Option("--kernels", help="Comma-separated proximity kernels to compare (the first is the default's).")] = f"{DEFAULT_KERNEL},linear,excess",
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="Bootstrap resamples for the 95% intervals.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the subsample, the random baseline and the bootstrap.")] = 0,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write all results as JSON here.")] = None,
    judge: Annotated[list[str], typer.Option("--judge", help="Also score with this chat model as an LLM judge (anything --model takes; repeatable): log P(yes) - log P(no) to a fixed question, with the cost of each method.")] = [],
    strict: StrictOpt = False,
    model: ModelOpt = DEFAULT_MODEL,
    sae: SaeOpt = DEFAULT_SAE,
    features: FeaturesOpt = DEFAULT_FEATURES,
    tokens: TokensOpt = ScoreConfig.tokens,
    max_tokens: MaxTokensOpt = ScoreConfig.max_tokens,
    device: DeviceOpt = ScoreConfig.device,
    dtype: DtypeOpt = ScoreConfig.dtype,
    batch_size: BatchOpt = ScoreConfig.batch_size,
    trust_remote_code: TrustOpt = ScoreConfig.trust_remote_code,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Detection quality of the geometric score against direct activation, representation matching and random removal."""
    set_verbosity(quiet, verbose)
    config = make_config(locals())
    from functools import partial

    from saefilter.files import write_json
    from saefilter.runs.evaluate import EvalRequest, evaluate_config
    from saefilter.terminal import count_progress, print_eval

    request = EvalRequest(
        positive=positive, negative=negative, data=data, pairs=pairs, labels=labels, anchors=anchors, limit=limit,
        neighbours=[int(k) for k in neighbours_list.split(",")],
        feature_counts=[int(c) for c in feature_counts.split(",")] if feature_counts else None,
        kernels=kernels.split(","), bootstrap=bootstrap, seed=seed, judges=tuple(judge), strict=strict,
    )
    console.print("[dim]loading model and SAE...[/]")
    report = run_with_errors(lambda: evaluate_config(config, request, partial(count_progress, console)))

    print_eval(out, report)
    if output:
        write_json(output, report)
        out.print(f"results -> {output}")


@app.command("drift")
def drift(
    base: Annotated[str, typer.Argument(help="The model before fine-tuning: anything --model takes.")],
    tuned: Annotated[list[str], typer.Argument(help="Fine-tuned model(s): anything --model takes, or a PEFT/LoRA adapter folder (applied on BASE).")],
    pairs: Annotated[str, typer.Option("--pairs", help="'builtin' (273 matched pairs over 12 kinds of harm, never used to build features) or a JSONL file of {id, category, prompt, harmful, benign[, split]}.")] = "builtin",
    split: Annotated[str, typer.Option("--split", help="dev, test or all (a file without a split column counts as all).")] = "test",
    kinds: Annotated[list[str], typer.Option("--kind", help="Only pairs of this kind of harm (repeatable).")] = [],
    max_drift: Annotated[float | None, typer.Option("--max-drift", help="Exit with status 3 when any tuned model's overall drift exceeds this (a gate for a fine-tuning pipeline).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the drifts (overall and per kind, with intervals) here.")] = None,
    per_pair: Annotated[bool, typer.Option("--per-pair", help="With --json: also each pair's log-probabilities under both models.")] = False,
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="Bootstrap resamples for the 95% intervals.")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap and the sign-flip test.")] = 0,
    max_tokens: MaxTokensOpt = DriftSettings.max_tokens,
    device: DeviceOpt = DriftSettings.device,
    dtype: Annotated[str, typer.Option("--dtype", help="Model dtype for both models: float32 (default), bfloat16, float16.")] = "float32",
    batch_size: BatchOpt = DriftSettings.batch_size,
    features: Annotated[str, typer.Option("--features", help="With --pairs FILE: the feature set (file, or 'embedded' for the default's) whose provenance the pairs are checked against.")] = DEFAULT_FEATURES,
    strict: StrictOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """What fine-tuning taught, judge-free: the change of the harmful-minus-benign margin on matched pairs."""
    set_verbosity(quiet, verbose)
    from saefilter.files import write_json
    from saefilter.runs.drift import run_drift
    from saefilter.terminal import print_drift

    settings = DriftSettings(pairs=pairs, split=split, kinds=tuple(kinds), device=device, dtype=dtype,
                             batch_size=batch_size, max_tokens=max_tokens, bootstrap=bootstrap, seed=seed,
                             features=features, strict=strict)
    report = run_with_errors(lambda: run_drift(base, tuned, settings, lambda spec: console.print(f"[dim]running {escape(spec)}...[/]")))
    print_drift(essential if max_drift is not None else out, report)
    if json_out:
        write_json(json_out, report.as_json(per_pair))
        out.print(f"drift -> {json_out}")
    if max_drift is not None:
        over = report.above(max_drift)
        if over:
            console.print(f"[bold red]drift above {max_drift}:[/] {escape(', '.join(over))}")
            raise typer.Exit(3)


@app.command("explain")
def explain(
    data: Annotated[Path, typer.Argument(help="The dataset file the record is in.")],
    line: Annotated[int | None, typer.Option("--line", "-l", help="The record's line (as check and score rows name it).")] = None,
    record_id: Annotated[str | None, typer.Option("--id", help="Or the record's id (a score row's 'id').")] = None,
    model: ModelOpt = DEFAULT_MODEL,
    sae: SaeOpt = DEFAULT_SAE,
    features: FeaturesOpt = DEFAULT_FEATURES,
    tokens: TokensOpt = ScoreConfig.tokens,
    aggregation: AggOpt = ScoreConfig.aggregation,
    max_tokens: MaxTokensOpt = ScoreConfig.max_tokens,
    field: FieldOpt = None,
    device: DeviceOpt = ScoreConfig.device,
    dtype: DtypeOpt = ScoreConfig.dtype,
    trust_remote_code: TrustOpt = ScoreConfig.trust_remote_code,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """One record in full: its words shaded by harmful mass, its top features with labels and contexts,
    its phrases, and whether deleting the named words cuts the score more than random words do."""
    set_verbosity(quiet, verbose)
    config = make_config(locals())
    from saefilter.runs.explain import explain as run_explain
    from saefilter.terminal import print_explanation

    explanation = run_with_errors(lambda: run_explain(config, data, line, record_id, console.status))
    print_explanation(essential, explanation, str(data))


@app.command("models")
def models(
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """List the models a package provides by name: installed or not, size, licence, layers, shipped SAE."""
    set_verbosity(quiet, verbose)
    from saefilter.terminal import print_models

    print_models(essential)


features_app = typer.Typer(help="Build, import and inspect harmful-feature sets.", no_args_is_help=True)
app.add_typer(features_app, name="features")


@features_app.command("build")
def features_build(
    harmful: Annotated[list[Path], typer.Option("--harmful", "-H", help="Harmful reference file(s): .jsonl/.json/.csv/.txt. Default: the built-in contrasts.")] = [],
    benign: Annotated[list[Path], typer.Option("--benign", "-B", help="Benign reference file(s), matched in form to --harmful.")] = [],
    contrast: Annotated[list[str], typer.Option("--contrast", "-c", help=f"Built-in contrast(s) to select from: {', '.join(BUILTIN_CONTRASTS)} (default: {', '.join(DEFAULT_CONTRASTS)}, as the embedded default); see `saefilter features contrasts`.")] = [],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the feature set (JSON).")] = Path("features.json"),
    top: Annotated[int, typer.Option("--top", help="How many features to keep from one contrast (the paper kept 100; the embedded default 200).")] = SelectionSettings.top,
    top_each: Annotated[int, typer.Option("--top-each", help="With several contrasts: the first N features of each, merged (as the embedded default).")] = DEFAULT_TOP_EACH,
    ids: Annotated[str | None, typer.Option("--ids", help="Skip selection: use these comma-separated latent indices.")] = None,
    column: Annotated[str | None, typer.Option("--column", help="CSV column / JSON key holding the text.")] = None,
    min_frequency: Annotated[float, typer.Option("--min-frequency", help="Ignore latents active in fewer harmful samples than this share.")] = SelectionSettings.min_frequency,
    max_benign_frequency: Annotated[float, typer.Option("--max-benign-frequency", help="Ignore latents active in more benign samples than this share (structural latents).")] = SelectionSettings.max_benign_frequency,
    selection: Annotated[str, typer.Option("--selection", help="token-controlled: rank latents by how much more they fire than on the same word in benign text (a latent for 'how' or a name does not qualify). activation: by per-sample max activation.")] = SelectionSettings.selection,
    paired: Annotated[bool, typer.Option("--paired", help="--harmful and --benign are aligned pairs: row i of each answers the same user turn; rank by the paired t of their difference (the built-in answers and code contrasts are paired).")] = False,
    identity_filter: Annotated[bool, typer.Option("--identity-filter/--no-identity-filter", help="Leave out latents that fire on neutral sentences naming religions, nationalities, genders, ethnicities or people (built-in sentences).")] = SelectionSettings.identity_filter,
    identity_reference: Annotated[list[Path], typer.Option("--identity-reference", help="Benign text the identity filter compares with (default: every built-in benign text).")] = [],
    function_word_filter: Annotated[bool, typer.Option("--function-word-filter/--no-function-word-filter", help="Pass over latents whose strongest activations in harmful text sit mostly on function words or punctuation ('of', 'be', 'Just', '.'): their labels name no harm and they fire on any text.")] = SelectionSettings.function_word_filter,
    direction: Annotated[bool, typer.Option("--direction/--no-direction", help="Also add the harmful direction of the (one) contrast, from the same forward pass: what `features add-direction` adds, with its defaults.")] = False,
    hard_negatives: HardNegativesOpt = [],
    aggregation: AggOpt = ScoreConfig.aggregation,
    model: ModelOpt = DEFAULT_MODEL,
    sae: SaeOpt = DEFAULT_SAE,
    tokens: TokensOpt = ScoreConfig.tokens,
    max_tokens: MaxTokensOpt = BUILD_MAX_TOKENS,
    device: DeviceOpt = ScoreConfig.device,
    dtype: DtypeOpt = ScoreConfig.dtype,
    batch_size: BatchOpt = ScoreConfig.batch_size,
    batch_tokens: BatchTokensOpt = ScoreConfig.batch_tokens,
    trust_remote_code: TrustOpt = ScoreConfig.trust_remote_code,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Select the SAE latents that best separate harmful from benign reference text.

    With no --harmful/--benign, from the built-in contrasts shipped in the package: by default the
    paired `answers` contrast (harmful vs benign answers to the same user turns), token-controlled,
    top 200, as the embedded default's latents are chosen, for any model and SAE; --direction adds
    its harmful direction too (as `features add-direction` does, with no second pass over the
    answers; --aggregation is the one you will score with). --contrast picks others (toxicity,
    intent, code), one ranked set each, merged with --top-each.
    """
    set_verbosity(quiet, verbose)
    config = make_config(locals())
    from saefilter.features.settings import SELECTIONS

    check_choice("--selection", selection, SELECTIONS)

    settings = SelectionSettings(top, min_frequency, max_benign_frequency, selection, identity_filter,
                                 function_word_filter)
    from saefilter.runs.features import build_features

    feature_set = run_with_errors(lambda: build_features(
        config, harmful, benign, contrast, ids, column, settings, top_each, paired, direction, hard_negatives,
        console.status, cli_progress, identity_reference))
    from saefilter.features.feature_set import save_feature_set
    from saefilter.terminal import print_feature_set

    save_feature_set(feature_set, output)
    print_feature_set(out, feature_set, limit=20)
    out.print(f"features -> {output}")


@features_app.command("calibrate")
def features_calibrate(
    features: Annotated[str, typer.Argument(help="Feature set file to calibrate, or 'embedded' (then give --output).")],
    benign: Annotated[list[Path], typer.Option("--benign", "-B", help="Benign text like the data you will check: .jsonl/.json/.csv/.txt (repeatable).")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Where to write the calibrated set (default: overwrite FEATURES).")] = None,
    percentile: Annotated[float, typer.Option("--percentile", help="Suggested threshold: this percentile of the benign scores.")] = 99.0,
    column: Annotated[str | None, typer.Option("--column", help="CSV column / JSON key holding the text.")] = None,
    model: ModelOpt = DEFAULT_MODEL,
    sae: SaeOpt = DEFAULT_SAE,
    tokens: TokensOpt = ScoreConfig.tokens,
    aggregation: AggOpt = ScoreConfig.aggregation,
    neighbours: NeighboursOpt = ScoreConfig.neighbours,
    kernel: KernelOpt = DEFAULT_KERNEL,
    max_tokens: MaxTokensOpt = ScoreConfig.max_tokens,
    device: DeviceOpt = ScoreConfig.device,
    dtype: DtypeOpt = ScoreConfig.dtype,
    batch_size: BatchOpt = ScoreConfig.batch_size,
    batch_tokens: BatchTokensOpt = ScoreConfig.batch_tokens,
    trust_remote_code: TrustOpt = ScoreConfig.trust_remote_code,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Score benign text with a feature set; store a suggested `check` threshold and each feature's
    benign baseline in the set, so explanations rank what a sample has above benign text.

    The baseline holds for the scoring settings used here (aggregation, neighbours, kernel, tokens);
    a run with other settings explains by plain contribution, as an uncalibrated set does."""
    set_verbosity(quiet, verbose)
    config = make_config(locals())
    if output is None and features == DEFAULT_FEATURES:
        fail("the embedded feature set is part of the package: give --output for the calibrated copy")
    target = output or Path(features)
    from saefilter.runs.features import calibrate_features

    calibrated_set = run_with_errors(lambda: calibrate_features(config, benign, column, percentile, console.status,
                                                                cli_progress))
    from saefilter.features.feature_set import save_feature_set

    save_feature_set(calibrated_set, target)
    threshold = calibrated_set.meta["suggested_threshold"]
    out.print(f"suggested threshold {threshold['value']} ({threshold['how']})\ncalibrated features -> {target}")


@features_app.command("add-direction")
def features_add_direction(
    features: Annotated[str, typer.Argument(help="Feature set file, or 'embedded' (then give --output).")],
    harmful: Annotated[list[Path], typer.Option("--harmful", "-H", help="Harmful answers (default: the built-in paired answers contrast).")] = [],
    benign: Annotated[list[Path], typer.Option("--benign", "-B", help="Benign answers, e.g. to the same user turns.")] = [],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Where to write the set (default: overwrite FEATURES).")] = None,
    ratio: Annotated[float, typer.Option("--ratio", help="How much the direction counts beside the harmful latents (1: equal spread on benign text).")] = 1.0,
    strength: Annotated[float, typer.Option("--c", help="Inverse L2 strength of the probe on standardised residuals.")] = 0.03,
    label: Annotated[str | None, typer.Option("--label", help="Label of the direction in explanations.")] = None,
    column: Annotated[str | None, typer.Option("--column", help="CSV column / JSON key holding the text.")] = None,
    hard_negatives: HardNegativesOpt = [],
    model: ModelOpt = DEFAULT_MODEL,
    sae: SaeOpt = DEFAULT_SAE,
    tokens: TokensOpt = ScoreConfig.tokens,
    aggregation: AggOpt = ScoreConfig.aggregation,
    neighbours: NeighboursOpt = ScoreConfig.neighbours,
    kernel: KernelOpt = DEFAULT_KERNEL,
    max_tokens: MaxTokensOpt = ScoreConfig.max_tokens,
    device: DeviceOpt = ScoreConfig.device,
    dtype: DtypeOpt = ScoreConfig.dtype,
    batch_size: BatchOpt = ScoreConfig.batch_size,
    batch_tokens: BatchTokensOpt = ScoreConfig.batch_tokens,
    trust_remote_code: TrustOpt = ScoreConfig.trust_remote_code,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Add a harmful direction to a feature set: a logistic probe on harmful vs benign residuals.

    The direction is the probe's weight vector on the mean residuals (at the SAE's layer) of harmful
    vs benign answers. Each latent's proximity to it (the cosine of its decoder row, clipped at 0)
    joins its proximity to the harmful latents, weighted so that both parts vary alike on the
    benign answers (--ratio 1). Replaces any direction the set has; its benign calibration no
    longer holds, so run `features calibrate` again."""
    set_verbosity(quiet, verbose)
    config = make_config(locals() | {"features": features})
    if output is None and features == DEFAULT_FEATURES:
        fail("the embedded feature set is part of the package: give --output for the new copy")
    target = output or Path(features)
    from saefilter.runs.features import add_direction

    updated = run_with_errors(lambda: add_direction(config, harmful, benign, column, strength, ratio, label,
                                                    hard_negatives, console.status, cli_progress))
    from saefilter.features.feature_set import save_feature_set

    save_feature_set(updated, target)
    added = updated.directions[0]
    out.print(f"direction '{added.label}' (weight {added.weight:.4g}) added -> {target}\n"
              f"run `saefilter features calibrate {target} --benign ...` again: the scores have changed")


@features_app.command("contrasts")
def features_contrasts(
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """List the built-in reference contrasts: what each side is, rows, sources and licences."""
    set_verbosity(quiet, verbose)
    from saefilter.terminal import print_contrasts

    print_contrasts(essential)


@features_app.command("import-neuronpedia")
def features_import(
    export: Annotated[Path, typer.Argument(help="Neuronpedia explanations export (.jsonl or .jsonl.gz).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the feature set (JSON).")] = Path("features.json"),
    keywords: Annotated[str | None, typer.Option("--keywords", help="Comma-separated keywords; default: a list of harm and toxicity terms.")] = None,
    layer: Annotated[str | None, typer.Option("--layer", help="Keep only explanations of this Neuronpedia layer id (e.g. 12-gemmascope-res-16k).")] = None,
    d_sae: Annotated[int | None, typer.Option("--d-sae", help="Width of the SAE, recorded so a mismatched --sae is caught.")] = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Select features of a published SAE whose Neuronpedia explanations mention harmful themes."""
    set_verbosity(quiet, verbose)
    from saefilter.features.feature_set import save_feature_set
    from saefilter.features.neuronpedia import DEFAULT_KEYWORDS, import_explanations
    from saefilter.terminal import print_feature_set

    words = [k for k in keywords.split(",")] if keywords else list(DEFAULT_KEYWORDS)
    feature_set = run_with_errors(lambda: import_explanations(export, words, layer, d_sae))
    save_feature_set(feature_set, output)
    print_feature_set(out, feature_set, limit=20)
    out.print(f"features -> {output}")


@features_app.command("merge")
def features_merge(
    sets: Annotated[list[Path], typer.Argument(help="Feature set files, ranked (as `features build` writes them).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the merged set (JSON).")] = Path("features.json"),
    top_each: Annotated[int | None, typer.Option("--top-each", help="Take the first N features of each set (default: all).")] = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Join feature sets built from different contrasts (e.g. toxicity and harmful intent) into one."""
    set_verbosity(quiet, verbose)
    from saefilter.features.feature_set import load_feature_set, merge_feature_sets, save_feature_set

    def merge():
        merged = merge_feature_sets([(path.stem, load_feature_set(path)) for path in sets], top_each)
        save_feature_set(merged, output)
        return merged

    merged = run_with_errors(merge)
    out.print(f"{len(merged.features)} features from {len(sets)} sets -> {output}")


@features_app.command("record")
def features_record(
    path: Annotated[Path, typer.Argument(help="Feature set file to record into (rewritten in place, or to --output).")],
    files: Annotated[list[Path], typer.Argument(help="Files whose rows played the role: any reference format.")],
    role: Annotated[str, typer.Option("--role", help="What the rows were for: 'settings chosen on' (the default), or another provenance role.")] = "settings chosen on",
    column: Annotated[str | None, typer.Option("--column", help="CSV column / JSON key holding the text.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the set here instead of over PATH.")] = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Record rows a set was chosen on outside saefilter (settings tuned on them), so `eval` and `drift`
    warn when they meet them again. Features, weights and labels stay as they are."""
    set_verbosity(quiet, verbose)
    from saefilter.features.feature_set import load_feature_set, save_feature_set
    from saefilter.runs.features import record_sources

    feature_set = run_with_errors(lambda: record_sources(load_feature_set(path), role, files, column))
    save_feature_set(feature_set, output or path)
    rows = sum(count for r, _, count in feature_set.provenance.rows() if r == role)
    out.print(f"{role}: {rows:,} rows from {len(feature_set.provenance.roles[role])} source(s) -> {output or path}")


@features_app.command("show")
def features_show(
    path: Annotated[str, typer.Argument(help="Feature set file, or 'embedded' for the set shipped for --model.")] = DEFAULT_FEATURES,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Rows to show (0 = all).")] = 0,
    model: Annotated[str, typer.Option("--model", "-m", help="Whose shipped set 'embedded' means (no weights load).")] = DEFAULT_MODEL,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Print a feature set as a table: index, label, weight and selection statistics."""
    set_verbosity(quiet, verbose)
    from saefilter.features.feature_set import load_feature_set
    from saefilter.scoring.config import resolve_features_path
    from saefilter.terminal import print_feature_set

    feature_set = run_with_errors(lambda: load_feature_set(resolve_features_path(path, model)))
    print_feature_set(essential, feature_set, limit=limit or None)


def run_with_errors(action):
    """Turn the library's input errors into one-line messages; Ctrl-C into a resume hint."""
    from saefilter.errors import InputError

    try:
        return action()
    except InputError as err:
        fail(str(err))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted.[/] Completed chunks are checkpointed: rerun the same command with --resume.")
        raise typer.Exit(130) from None


def reflowed(doc: str) -> str:
    """A docstring's paragraphs each on one line: rich keeps single newlines, so help wrapped at the
    source's width would print as ragged lines in an 80-column terminal."""
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in inspect.cleandoc(doc).split("\n\n"))


for command in (*app.registered_commands, *features_app.registered_commands):
    if command.help is None and command.callback is not None and command.callback.__doc__:
        command.help = reflowed(command.callback.__doc__)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
