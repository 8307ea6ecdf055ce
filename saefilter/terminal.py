"""Rich terminal output: progress bars and summary tables."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from saefilter.outputs.score_files import why_flagged

if TYPE_CHECKING:  # annotations only: `check` prints its findings without importing torch
    from saefilter.features.feature_set import FeatureSet
    from saefilter.model.named import NamedModel
    from saefilter.outputs.prune import PruneResult
    from saefilter.runs.check import Finding
    from saefilter.runs.explain import Explanation
    from saefilter.runs.pipeline import ScoreSummary


@contextmanager
def score_progress(console: Console) -> Iterator[tuple[Callable[[int], None], Callable[[int], None]]]:
    """(on_start(total), on_progress(n_done_increment)) callbacks driving one progress bar."""
    progress = Progress(
        TextColumn("[bold]scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    task = progress.add_task("score", total=None, rate="")

    def on_start(total: int) -> None:
        progress.update(task, total=total)
        progress.start()  # only once the input has been validated: no bar before an input error

    def on_progress(n: int) -> None:
        progress.advance(task, n)
        speed = progress.tasks[0].speed
        progress.update(task, rate=f"{speed:.1f} samples/s" if speed else "")

    try:
        yield on_start, on_progress
    finally:
        progress.stop()


def print_score_summary(console: Console, summary: ScoreSummary) -> None:
    table = Table(title=f"saefilter score: {summary.input}", show_header=False, title_justify="left")
    table.add_row("lines", str(summary.n_lines))
    table.add_row("scored", str(summary.n_scored))
    if summary.n_skipped:
        table.add_row("skipped", f"{summary.n_skipped} ({summary.n_blank} blank) -> {summary.outputs.skipped}")
    if summary.n_truncated:
        table.add_row("truncated to --max-tokens", str(summary.n_truncated))
    if len(summary.scores):
        scores = summary.scores
        table.add_row("score mean / median / max", f"{scores.mean():.4f} / {np.median(scores):.4f} / {scores.max():.4f}")
    rate = summary.n_scored / summary.seconds if summary.seconds else 0.0
    table.add_row("time", f"{summary.seconds:.1f} s ({rate:.1f} samples/s)")
    console.print(table)
    if summary.top_rows:
        top = Table(title="highest scores: the latent above its benign level, the words, the phrase",
                    title_justify="left", box=box.SIMPLE_HEAD)
        for column in ("rank", "line", "score"):
            top.add_column(column, justify="right", no_wrap=True)
        top.add_column("why", overflow="fold", max_width=52)  # wraps between words
        for row in summary.top_rows:
            top.add_row(str(row["rank"]), str(row["line"]), f"{row['score']:.4f}",
                        Text("\n".join(part for part in why_flagged(row) if part)))
        console.print(top)
    console.print(f"scores  -> {summary.outputs.scores}")
    console.print(f"summary -> {summary.outputs.meta}")


@contextmanager
def count_progress(console: Console, label: str, total: int) -> Iterator[Callable[[int], None]]:
    with Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


def brief(value: object, shown: int = 5) -> str:
    """A metadata value for one line: a long list as its length and first items."""
    if isinstance(value, list) and len(value) > shown:
        return f"{len(value)} [{', '.join(map(str, value[:shown]))}, ...]"
    return str(value)


def print_feature_set(console: Console, feature_set: FeatureSet, limit: int | None = None) -> None:
    """One short block per feature, so labels keep the whole width of an 80-column terminal: the
    numbers on the first line, then the label (the words where the latent peaks in harmful text)
    and its strongest context there, so a latent that peaks on 'Then' shows the sentence it fires in."""
    from rich.padding import Padding

    selection = feature_set.meta.get("selection", {})
    title = f"{len(feature_set.features)} harmful features" + (
        f" and {len(feature_set.directions)} harmful direction(s)" if feature_set.directions else "") + (
        f" for {feature_set.sae}" if feature_set.sae else "")
    console.print(title)
    calibrated = all(c.benign_contribution is not None for c in feature_set.components)
    console.print("freq: the share of harmful / benign samples it fires on", style="dim")
    if calibrated:
        console.print("benign share: its mean part of the score on benign text", style="dim")

    def block(head: str, label: Text) -> None:
        console.print(Text(head, style="bold"))
        console.print(Padding(label, (0, 0, 0, 4)))

    for feature in feature_set.features[:limit]:
        stats = feature.stats
        numbers = [f"weight {feature.weight:g}"]
        if "effect_size" in stats:
            numbers.append(f"effect {stats['effect_size']:.2f}")
        if "freq_harmful" in stats and "freq_benign" in stats:
            numbers.append(f"freq {stats['freq_harmful']:.2f}/{stats['freq_benign']:.2f}")
        if calibrated:
            numbers.append(f"benign share {feature.benign_contribution:.4f}")
        label = Text(feature.label)  # plain text: a label like '[/b]' must not be read as markup
        if stats.get("snippets"):
            label.append("\n" + stats["snippets"][0].strip(), style="dim")
        block(f"#{feature.index:<5d} " + "  ".join(numbers), label)
    for j, direction in enumerate(feature_set.directions):
        label = Text(direction.label)
        label.append(f"\na direction in the residual stream ({len(direction.vector)} dims), not a latent", style="dim")
        share = f"  benign share {direction.benign_contribution:.4f}" if calibrated else ""
        block(f"direction {j}  weight {direction.weight:.4g}{share}", label)
    if limit is not None and len(feature_set.features) > limit:
        console.print(f"... {len(feature_set.features) - limit} more (use --limit 0 to see all)")
    if selection:
        console.print("selection: " + ", ".join(f"{k}={brief(v)}" for k, v in selection.items() if not isinstance(v, dict)))
    calibration = feature_set.meta.get("benign_calibration")
    if calibrated and isinstance(calibration, dict):
        console.print("calibrated (benign share = mean contribution to the score on benign text): "
                      + ", ".join(f"{k}={v}" for k, v in calibration.items()))
    print_provenance(console, feature_set)


def print_provenance(console: Console, feature_set: FeatureSet) -> None:
    """What the set was built and chosen on: each role, its sources and their row counts."""
    rows = feature_set.provenance.rows()
    if not rows:
        console.print("provenance: none recorded (overlap checks cannot run against this set)", style="dim")
        return
    console.print(Text("provenance: what it was built and chosen on", style="bold"))
    role_before = None
    for role, source, count in rows:
        head = f"  {role}:" if role != role_before else ""
        console.print(Text(f"{head:<22}{count:>6,} rows  ") + Text(source), highlight=False)
        role_before = role


def print_overlap(console: Console, overlap: dict | None) -> None:
    """The decontamination warning of `eval` and `drift --pairs`: how many rows, where, with what."""
    if not overlap or overlap.get("rows") == 0:
        return
    if overlap.get("rows") is None:
        console.print(escape(overlap["message"]), style="dim")
        return
    console.print(Text("warning: ", style="bold yellow") + Text(overlap["message"] + ":"))
    for line in overlap["first"]:
        console.print(Text("  " + line), highlight=False)
    if overlap["rows"] > len(overlap["first"]):
        console.print(f"  ... {overlap['rows'] - len(overlap['first'])} more (all in --json / --output)")
    console.print("  numbers on these rows overstate the score; --strict refuses them", style="dim")


def print_report_summary(console: Console, summary: dict) -> None:
    """The cut-off and the features that explain the flagged rows, one line each at 80 columns."""
    cut = summary["cutoff"]
    above = f"{cut:.4f} ({summary['above']} records at or above)" if cut is not None else "none"
    console.print(f"{summary['records']} records; cut-off {above}")
    features = summary["top_features"]
    if not features:
        return
    calibrated = all("above_benign" in f for f in features)
    table = Table(title="features of the flagged rows", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("feature", no_wrap=True)
    table.add_column("above\nbenign" if calibrated else "contri-\nbution", justify="right", no_wrap=True)
    table.add_column("label: kinds of harm, then the words it peaks on", no_wrap=True, overflow="ellipsis",
                     max_width=56)
    for f in features:
        name = f"#{f['feature']}" if str(f["feature"]).isdigit() else str(f["feature"]).replace("direction", "dir")
        value = f["above_benign"] if calibrated else f["contribution"]
        table.add_row(name, f"{value:.4f}", f["label"])
    console.print(table)


def describe_cutoff(cutoff: dict) -> str:
    """{'fraction': 0.25} -> 'top 25% of scores' (the flag the user gave, in words)."""
    if "top_k" in cutoff:
        return f"the {cutoff['top_k']} highest scores"
    if "fraction" in cutoff:
        return f"the top {cutoff['fraction']:.4g} of scores ({cutoff['fraction'] * 100:.4g}%)"
    return f"scores at or above {cutoff['threshold']:g}"


def fit_words(text: str, width: int) -> str:
    """`text` if it fits `width`, else as many whole words as fit, then '…': never cut mid-word."""
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    return (cut[: cut.rfind(" ")] if " " in cut.strip() else cut).rstrip() + "…"


def print_finding(console: Console, finding: Finding) -> None:
    """`path:line  score  #latent label`, then the words that carry the most harmful mass and the
    phrase around the heaviest, indented. `path:line` and the score stay whole (editors and CI logs
    link them); a label that does not fit beside them goes on lines of its own, wrapped between
    words, and the words and the phrase end at a whole word."""
    import textwrap

    head = f"{finding.path}:{finding.line}  {finding.score:.4f}"
    label, words, phrase = finding.why
    width = console.width
    if len(head) + 2 + len(label) <= width:
        console.print(Text(f"{head}  {label}"), no_wrap=True, highlight=False)
    else:
        console.print(Text(head), soft_wrap=True, highlight=False)  # never cut, however long the path
        for line in textwrap.wrap(label, width, initial_indent="    ", subsequent_indent="      ",
                                  break_long_words=False):
            console.print(Text(line), no_wrap=True, highlight=False)
    console.print(Text(fit_words(f"    {words}", width)), no_wrap=True, highlight=False)
    if phrase:
        console.print(Text(fit_words(f"    {phrase}", width)), no_wrap=True, highlight=False)


def print_prune_summary(console: Console, result: PruneResult) -> None:
    counts, stats = result.summary["counts"], result.summary["score_stats"]
    # the input's path on its own line: as a table title it would break inside the path
    console.print(f"saefilter prune: {result.summary['input']}", highlight=False, soft_wrap=True)
    table = Table()
    for column in ("", "records", "mean score", "max score"):
        table.add_column(column)
    arms = [("kept", "kept"), ("removed (by score)", "removed"), ("removed (random baseline)", "random_removed")]
    if "judge_removed" in counts:
        arms.append(("removed (by the judge)", "judge_removed"))
    for name, key in arms:
        s = stats[key]
        table.add_row(name, str(counts[key]), f"{s.get('mean', float('nan')):.4f}", f"{s.get('max', float('nan')):.4f}")
    if counts["unscorable"]:
        table.add_row("unscorable (see prune.json)", str(counts["unscorable"]), "", "")
    console.print(table)
    console.print(f"cut-off: {describe_cutoff(result.summary['cutoff'])}, seed {result.summary['seed']}")
    console.print("kept + removed + unscorable = input: checked")
    if "judge" in result.summary:
        judge = result.summary["judge"]
        cost = judge["cost"]
        console.print(f"judge {judge['model']}: {cost['rows']:,} rows, {cost['seconds']:,.0f} s", highlight=False)
        console.print(f"removed by more than one (of {counts['removed']:,} each):", highlight=False)
        shared = ", ".join(f"{'all three' if k.count('&') == 2 else k} {v:,}"
                           for k, v in judge["removed_overlap"].items())
        console.print(Text(fit_words(f"  {shared}", 80)), no_wrap=True, highlight=False)
    outputs = [("pruned", result.pruned), ("removed", result.removed), ("random", result.random)]
    outputs += [("judge", result.judge)] if result.judge else []
    for label, path in outputs + [("report", result.report)]:
        console.print(f"{label:8s}-> {path}", highlight=False, soft_wrap=True)  # paths whole, for copying


def print_eval(console: Console, report: dict) -> None:
    """One row per method, its settings folded into the first column and each interval written
    compactly, so the table fits 80 columns without cutting a name."""
    paired = report.get("n_pairs") is not None
    what = f"{report['n_pairs']} matched pairs" if paired else f"{report['n_positive']} positive vs {report['n_negative']} negative"
    table = Table(title=f"saefilter eval: {what} ({report['hook']})", title_justify="left", box=box.SIMPLE_HEAD,
                  padding=(0, 1))
    table.add_column("method: settings", overflow="fold", min_width=16)
    table.add_column("AUROC\n(95% CI)", no_wrap=True)
    if paired:
        table.add_column("pairwise acc.\n(95% CI)", no_wrap=True)
    table.add_column("AP", no_wrap=True)
    table.add_column("removed at\n10/25/50%", no_wrap=True)

    def with_interval(value: float, interval: list[float]) -> str:
        return f"{value:.3f} {interval[0]:.2f}-{interval[1]:.2f}"

    judges: list[str] = []  # named under the table, where a model name has room to stay whole
    for result in report["results"]:
        m, ci = result["metrics"], result["intervals"]
        pairwise = [with_interval(m["pairwise_accuracy"], ci["pairwise_accuracy"])] if paired else []
        if result["method"] == "judge":
            judges.append(result["variant"])
            name = f"judge {len(judges)}"
        else:
            name = f"{result['method']}: {result['variant']}"
        table.add_row(
            escape(name),
            with_interval(m["auroc"], ci["auroc"]),
            *pairwise,
            f"{m['average_precision']:.3f}",
            " ".join(f"{m[f'removed_at_{p}']:.2f}" for p in (10, 25, 50)),
        )
    console.print(table)
    for number, variant in enumerate(judges, 1):
        console.print(escape(f"judge {number}: {variant}"))
    print_overlap(console, report.get("overlap"))
    costs = report.get("costs", {})
    if len(costs) > 1:
        cost_table = Table(title="cost per 1,000 rows", title_justify="left")
        for column in ("method", "seconds", "tokens", "layers"):
            cost_table.add_column(column, justify="left" if column == "method" else "right")
        for name, cost in costs.items():
            cost_table.add_row(name, f"{cost['seconds_per_1000']:.1f}", f"{cost['tokens_per_1000']:,}", cost["layers_run"])
        console.print(cost_table)
        cut = report.get("truncated_to_max_tokens", {})
        console.print(f"samples cut at --max-tokens {cut.get('max_tokens')} for every method: "
                      + ", ".join(f"{k} {v}" for k, v in cut.items() if k != "max_tokens"))


def shipped_cell(model: NamedModel) -> str:
    """'yes, layer N' from the shipped SAE's config (a JSON read: no weights load), or why not."""
    import json

    from saefilter.model.hooks import parse_hook_name
    from saefilter.scoring.config import shipped_dir

    if model.shipped is None:
        return "no: build one (README)"
    path = shipped_dir(model.name) / "sae" / "cfg.json"
    if not path.is_file():
        return f"missing: {path} (reinstall saefilter)"
    cfg = json.loads(path.read_text())
    hook = parse_hook_name(cfg.get("metadata", {}).get("hook_name") or cfg.get("hook_name", ""))
    return f"yes, layer {hook.layer}" + (" (the default)" if model.shipped == "" else "")


def print_models(console: Console) -> None:
    """One short block per model, the name first and whole (it is what the user types)."""
    from rich.markup import escape

    from saefilter.model.named import NAMED_MODELS, is_installed

    console.print("Models a package provides (--model NAME):")
    for m in NAMED_MODELS:
        state = "installed" if is_installed(m) else "not installed"
        console.print(f"\n[bold]{m.name}[/]  {state}, {m.size_bytes / 1e6:,.0f} MB, {m.n_layers} layers x {m.d_model}",
                      highlight=False)
        console.print(f"  licence: {escape(m.licence)}", highlight=False)
        console.print(f"  shipped SAE + features: {escape(shipped_cell(m))}", highlight=False)
        console.print(f"  install: {escape(m.install)}", highlight=False)
    console.print("\nAlso accepted: a .gguf file (converted once into the cache), a model folder, a "
                  "Hugging Face id.")


def print_contrasts(console: Console) -> None:
    import json

    from saefilter.inputs.reference import BUILTIN_CONTRASTS_DIR

    manifest = json.loads((BUILTIN_CONTRASTS_DIR / "manifest.json").read_text(encoding="utf-8"))
    table = Table(title="built-in reference contrasts (saefilter features build --contrast NAME)", title_justify="left",
                  box=box.SIMPLE_HEAD)
    for column in ("name", "side", "rows", "what", "sources (licence)"):
        table.add_column(column, overflow="fold", min_width=26 if column == "what" else None)  # whole paths
    for name, contrast in manifest["contrasts"].items():
        for side in ("harmful", "benign"):
            entry = contrast[side]
            sources = "; ".join(f"{s['name']} {s['rows']} ({s['licence'].split(',')[0]})" for s in entry["sources"])
            table.add_row(name if side == "harmful" else "", side, str(entry["rows"]), entry["what"], sources)
    console.print(table)
    console.print(f"files, manifest and licence notices: {BUILTIN_CONTRASTS_DIR}")


def _signed(value: float) -> str:
    return f"{value:+.3f}"


def print_drift(console: Console, report) -> None:
    """One table per tuned model, at most 80 columns: overall first, then each kind of harm."""
    settings = report.settings
    source = "built-in pairs" if settings.pairs == "builtin" else str(settings.pairs)
    console.print(
        f"drift from {report.base} on {len(report.pairs)} {source} ({settings.split}), "
        f"nats per answer token; base run in {report.base_seconds:.0f} s",
        highlight=False,
    )
    print_overlap(console, report.overlap)
    for model in report.tuned:
        table = Table(title=f"{model.spec}{' (LoRA adapter)' if model.adapter else ''}", title_justify="left")
        table.add_column("kind", no_wrap=True)
        table.add_column("n", justify="right")
        table.add_column("drift", justify="right")
        table.add_column("95% interval", justify="right", no_wrap=True)
        table.add_column("p", justify="right")
        table.add_column("Δharmful", justify="right")
        table.add_column("Δbenign", justify="right")
        rows = [("overall", model.summary["overall"])] + list(model.summary["kinds"].items())
        for name, d in rows:
            table.add_row(
                Text(name, style="bold" if name == "overall" else ""), str(d.n), _signed(d.drift),
                f"[{_signed(d.interval[0])}, {_signed(d.interval[1])}]", f"{d.p_value:.4f}",
                _signed(d.harmful_change), _signed(d.benign_change),
            )
        console.print(table)
        console.print(f"[dim]{model.seconds:.0f} s. drift > 0: moved towards the harmful answers; Δharmful, "
                      "Δbenign: change of each side's log-prob.[/]")


def shaded(answer: str, words: list, turn: int) -> Text:
    """The answer with each word shaded by its share of the heaviest word's mass: the words a reader's
    eye should land on, without a legend to learn."""
    text = Text(answer)
    mine = [w for w in words if w.turn == turn]
    peak = max((w.mass for w in mine), default=0.0)
    if peak <= 0:
        return text
    for word in mine:
        share = word.mass / peak
        style = "bold white on red" if share >= 0.6 else "red" if share >= 0.3 else "yellow" if share >= 0.1 else None
        if style:
            text.stylize(style, word.start, word.end)
    return text


def print_explanation(console: Console, explanation: Explanation, source: str) -> None:
    """`saefilter explain`: score and where; each answer shaded; the top features, each on its own
    block (label wrapped between words, its strongest context); the phrases; the faithfulness line."""
    import textwrap

    row = explanation.row
    console.print(Text(f"{source}:{explanation.record.line_no}  score {row['score']:.4f}", style="bold"), soft_wrap=True)
    console.print("answer (words shaded by harmful mass: red on the heaviest, yellow on lighter):", style="dim")
    for turn, answer in enumerate(explanation.answers):
        console.print(Padding(shaded(answer, explanation.words, turn), (0, 0, 0, 4)))
    console.print(Text("features that explain it", style="bold"))
    for feature in explanation.features:
        name = f"#{feature['index']}" if "index" in feature else f"direction {feature['direction']}"
        share = f"  above benign {feature['above_benign']:.4f}" if "above_benign" in feature else ""
        console.print(Text(f"  {name}  contribution {feature['contribution']:.4f}{share}"), highlight=False)
        for line in textwrap.wrap(feature["label"], console.width, initial_indent="    ", subsequent_indent="    ",
                                  break_long_words=False):
            console.print(Text(line), no_wrap=True, highlight=False)
        for context in feature.get("contexts", []):
            console.print(Text(fit_words("    " + " ".join(context.split()), console.width), style="dim"), no_wrap=True)
    if row.get("top_spans"):
        console.print(Text("phrases", style="bold"))
        for span in row["top_spans"]:
            console.print(Text(fit_words(f'    "{" ".join(span["text"].split())}"', console.width)), no_wrap=True)
    faithful = explanation.faithfulness
    if faithful is None:
        console.print("faithfulness: too few words to compare with random ones", style="dim")
        return
    ratio = f", {faithful.ratio:.1f}x" if faithful.ratio is not None else ""
    console.print(Text(fit_words(
        f"deleting the {faithful.k} named words drops the score by {faithful.named:+.4f}; {faithful.k} random "
        f"words of the answer by {faithful.random:+.4f} (mean of {faithful.draws}{ratio})", console.width * 3)))
