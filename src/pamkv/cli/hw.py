"""`pamkv hw`: the hardware presets (devices and links) and what their models price."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pamkv.cli.app import JSON_HELP, SEED_HELP, app
from pamkv.errors import UserError
from pamkv.hardware import (
    DramDevice,
    Gpu,
    PimDevice,
    SsdDevice,
    device_summary,
    list_devices,
    list_links,
    load_device,
    load_link,
)
from pamkv.hardware.dram import PATTERNS
from pamkv.hardware.mapping import MAPPINGS
from pamkv.output import write_json

_QUERIES = ("--pattern", "--stream-bytes", "--attention-context", "--gemm")


def _fmt(v: object, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return str(v)


def _overview(json_path: str | None) -> None:
    """Table of every device and link preset."""
    devices = [device_summary(load_device(n)) for n in list_devices()]
    links = [load_link(n).summary() for n in list_links()]
    if json_path:
        write_json({"devices": devices, "links": links}, json_path)
        if json_path == "-":
            return
    table = Table(title="Device presets (pamkv hw DEVICE for details)")
    cols = [("name", "name"), ("kind", "kind"), ("GB", "capacity_gb"),
            ("ext GB/s", "peak_external_bandwidth_gbps"), ("int GB/s", "peak_internal_bandwidth_gbps"),
            ("TFLOPS", "peak_flops"), ("pJ/bit", "energy_pj_per_bit"), ("$/GB", "cost_usd_per_gb")]
    for label, _ in cols:
        text = label in ("name", "kind")
        table.add_column(label, justify="left" if text else "right", no_wrap=text)
    for d in devices:
        row = []
        for _, key in cols:
            v = d.get(key)
            if key == "peak_flops" and isinstance(v, float):
                v = v / 1e12
            digits = 2 if key in ("energy_pj_per_bit", "cost_usd_per_gb", "peak_flops") else 1
            if isinstance(v, float) and v >= 1000:
                row.append(f"{v:.0f}")
            else:
                row.append(_fmt(v, digits))
        table.add_row(*row)
    console = Console()
    console.print(table)
    lt = Table(title="Link presets")
    for label in ("name", "GB/s", "achievable GB/s", "latency us", "pJ/bit"):
        lt.add_column(label, justify="left" if label == "name" else "right", no_wrap=label == "name")
    for link in links:
        lt.add_row(str(link["name"]), _fmt(link["bandwidth_gbps"]), _fmt(link["achievable_gbps"]),
                   _fmt(link["latency_us"], 2), _fmt(link["energy_pj_per_bit"]))
    console.print(lt)


def _parse_gemm(text: str) -> tuple[int, int, int]:
    parts = text.replace("x", ",").split(",")
    try:
        m, n, k = (int(p) for p in parts)
    except ValueError:
        raise UserError(f"--gemm: expected M,N,K as three integers (got '{text}')") from None
    if min(m, n, k) < 1:
        raise UserError(f"--gemm: M, N and K must be >= 1 (got '{text}')")
    return m, n, k


def _show(result: dict[str, object], json_path: str | None, title: str) -> None:
    if json_path:
        write_json(result, json_path)
        if json_path == "-":
            return
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for k, v in result.items():
        if isinstance(v, dict | list):
            continue
        table.add_row(k, _fmt(v, 4) if isinstance(v, float) and abs(v) < 1e3 else _fmt(v))
    Console().print(table)


@app.command()
def hw(
    name: Annotated[str | None, typer.Argument(help="A device or link preset, or a device YAML file.")] = None,
    pattern: Annotated[
        str | None, typer.Option("--pattern", help=f"DRAM access pattern: {', '.join(PATTERNS)}.")
    ] = None,
    mapping: Annotated[
        str | None,
        typer.Option(
            "--mapping",
            help=f"With --pattern: address mapping ({', '.join(MAPPINGS)}); with --attention-*: pam or attacc.",
        ),
    ] = None,
    channels: Annotated[int | None, typer.Option("--channels", help="With --pattern: channels to model.")] = None,
    no_refresh: Annotated[bool, typer.Option("--no-refresh", help="With --pattern: refresh off.")] = False,
    stream_bytes: Annotated[
        float | None,
        typer.Option("--stream-bytes", help="Seconds to scan N bytes of KV in place (or move them on a link)."),
    ] = None,
    attention_context: Annotated[
        int | None, typer.Option("--attention-context", help="Tokens per head of one decode step's attention.")
    ] = None,
    attention_heads: Annotated[int, typer.Option("--attention-heads", help="Heads attended on the device.")] = 1,
    head_dim: Annotated[int, typer.Option("--head-dim", help="Head width (16-bit K and V).")] = 128,
    power_limit: Annotated[bool, typer.Option("--power-limit", help="PIM under the peak-power limit.")] = False,
    gemm: Annotated[str | None, typer.Option("--gemm", help="One 16-bit GEMM on a GPU: M,N,K.")] = None,
    seed: Annotated[int, typer.Option("--seed", help=SEED_HELP)] = 1,
    json_path: Annotated[str | None, typer.Option("--json", help=JSON_HELP)] = None,
) -> None:
    """List device and link presets, or show one device's figures and price a pattern, scan, attention step or GEMM."""
    asked = (pattern, stream_bytes, attention_context, gemm)
    given = [q for q, v in zip(_QUERIES, asked, strict=True) if v is not None]
    if len(given) > 1:
        raise UserError(f"pamkv hw: give one of {', '.join(_QUERIES)} at a time (got {', '.join(given)})")
    if name is None:
        if given:
            raise UserError(f"pamkv hw: {given[0]} needs a DEVICE")
        _overview(json_path)
        return
    if name in list_links():
        link = load_link(name)
        if given and given[0] != "--stream-bytes":
            raise UserError(f"pamkv hw {name}: a link only takes --stream-bytes (got {given[0]})")
        result = link.summary()
        if stream_bytes is not None:
            if stream_bytes < 0:
                raise UserError("--stream-bytes must be >= 0")
            result = {"link": name, "bytes": stream_bytes, "seconds": float(link.transfer_seconds(stream_bytes))}
        _show(result, json_path, f"link {name}")
        return
    dev = load_device(name)
    label = dev.cfg.name
    if pattern is not None:
        if not isinstance(dev, DramDevice | PimDevice):
            raise UserError(f"pamkv hw {label}: --pattern needs a DRAM device (this is a {dev.cfg.kind} preset)")
        if mapping is not None and mapping not in MAPPINGS:
            raise UserError(f"--mapping: unknown DRAM mapping '{mapping}' (known: {', '.join(MAPPINGS)})")
        r = dev.pattern(pattern, mapping, channels, not no_refresh, seed)
        _show({"device": label, **r.as_dict()}, json_path, f"{label}: {pattern}")
        return
    if stream_bytes is not None:
        if stream_bytes < 0:
            raise UserError("--stream-bytes must be >= 0")
        if isinstance(dev, Gpu):
            raise UserError(f"pamkv hw {label}: --stream-bytes needs a memory device")
        if isinstance(dev, PimDevice | SsdDevice):
            secs = float(dev.stream_seconds(stream_bytes, power_limit=power_limit))
            how = "in place"
        else:
            secs = float(dev.stream_seconds(stream_bytes))
            how = "read out"
        bw = stream_bytes / secs / 1e9 if secs > 0 else 0.0
        _show({"device": label, "bytes": stream_bytes, "seconds": secs, "bandwidth_gbps": bw, "how": how,
               "power_limit": power_limit}, json_path, f"{label}: scan {stream_bytes:,.0f} B")
        return
    if attention_context is not None:
        if attention_context < 1 or attention_heads < 1 or head_dim < 1:
            raise UserError("--attention-context, --attention-heads and --head-dim must be >= 1")
        m = mapping or "pam"
        if isinstance(dev, PimDevice):
            if m not in ("pam", "attacc"):
                raise UserError(f"--mapping: unknown PIM mapping '{m}' (known: pam, attacc)")
            cost = dev.attention_step(attention_context, attention_heads, head_dim, m, power_limit)  # type: ignore[arg-type]
            extra: dict[str, object] = {}
            if m == "attacc":
                extra["cycles"] = dev.attacc_cycles(attention_context, attention_heads, head_dim, power_limit)
        elif isinstance(dev, SsdDevice):
            if m != "pam":
                raise UserError(f"pamkv hw {label}: an SSD only takes --mapping pam")
            tokens = attention_context * attention_heads
            load_secs = float(dev.attention_seconds(tokens, 4.0 * head_dim, queries=attention_heads,
                                                     head_dim=head_dim, power_limit=power_limit))
            result = {"device": label, "context": attention_context, "heads": attention_heads, "head_dim": head_dim,
                      "mapping": m, "power_limit": power_limit, "seconds": load_secs}
            _show(result, json_path, f"{label}: attention")
            return
        else:
            raise UserError(f"pamkv hw {label}: --attention-context needs a PIM device (hbm3-pim, ddr4-pim, ssd-pim)")
        result = {"device": label, "context": attention_context, "heads": attention_heads, "head_dim": head_dim,
                  "mapping": m, "power_limit": power_limit, **cost.as_dict(), **extra}
        _show(result, json_path, f"{label}: attention, {m} mapping")
        return
    if gemm is not None:
        if not isinstance(dev, Gpu):
            raise UserError(f"pamkv hw {label}: --gemm needs a GPU (h100, a100)")
        m_, n_, k_ = _parse_gemm(gemm)
        secs = dev.gemm_seconds(m_, n_, k_)
        flops = 2.0 * m_ * n_ * k_
        _show({"device": label, "m": m_, "n": n_, "k": k_, "seconds": secs, "flops": flops,
               "tflops": flops / secs / 1e12}, json_path, f"{label}: GEMM {m_}x{k_} . {k_}x{n_}")
        return
    _show(device_summary(dev), json_path, f"device {label}")
