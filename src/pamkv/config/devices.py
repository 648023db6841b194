"""Schemas of hardware presets: DRAM and DRAM-PIM devices, SSD-PIM, GPUs, and links.

A device preset is ``src/pamkv/presets/devices/<name>.yaml`` and a link preset
``src/pamkv/presets/links/<name>.yaml`` (or a user's YAML file of the same shape). Every numeric
value in a packaged preset carries a comment naming its source (datasheet, JEDEC standard, paper
section or reference simulator file). Timings of DRAM are in clock cycles of ``tck_ns``, as JEDEC
and Ramulator state them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pamkv.config.loader import list_presets, preset_dir, read_yaml, validate
from pamkv.errors import UserError

_STRICT = ConfigDict(extra="forbid", frozen=True)


class Cost(BaseModel):
    """Purchase cost of the device's capacity: an estimate with its source and date."""

    model_config = _STRICT

    usd_per_gb: float = Field(ge=0, description="Estimated US dollars per GB of capacity.")
    source: str = Field(min_length=1, description="Where the estimate comes from, with its date.")


class DramOrg(BaseModel):
    """Organisation of one DRAM device as its controllers see it."""

    model_config = _STRICT

    channels: int = Field(gt=0, description="Independent channels, one controller (read queue) each.")
    pseudo_channels: int = Field(default=1, gt=0, description="Pseudo-channels per channel (HBM); 1 otherwise.")
    ranks: int = Field(default=1, gt=0, description="Ranks (HBM: stack IDs) per pseudo-channel.")
    bank_groups: int = Field(gt=0, description="Bank groups per rank.")
    banks_per_group: int = Field(gt=0, description="Banks per bank group.")
    rows: int = Field(gt=0, description="Rows per bank.")
    row_bytes: int = Field(gt=0, description="Bytes of one row (page) of one bank as one (pseudo-)channel sees it.")
    burst_bytes: int = Field(gt=0, description="Bytes moved by one column read (one burst) on one (pseudo-)channel.")
    bus_bits: int = Field(gt=0, description="Data bus width of one (pseudo-)channel, bits.")
    data_rate_mtps: float = Field(gt=0, description="Data rate per pin, mega-transfers per second.")
    chips_per_rank: int = Field(
        default=1, gt=0, description="DRAM chips operating in lockstep in one rank (DIMMs); each has its own banks."
    )

    @model_validator(mode="after")
    def _row_holds_bursts(self) -> DramOrg:
        if self.row_bytes % self.burst_bytes:
            raise ValueError(f"row_bytes ({self.row_bytes}) must be a multiple of burst_bytes ({self.burst_bytes})")
        return self


class DramTiming(BaseModel):
    """JEDEC timing parameters in clock cycles (``nXX``) of the command clock ``tck_ns``."""

    model_config = _STRICT

    tck_ns: float = Field(gt=0, description="Command clock period, ns.")
    nBL: int = Field(gt=0, description="Data-bus cycles of one burst.")
    nCL: int = Field(gt=0, description="Read command to first data (CAS latency).")
    nRCD: int = Field(gt=0, description="Activate to read.")
    nRP: int = Field(gt=0, description="Precharge to activate.")
    nRAS: int = Field(gt=0, description="Activate to precharge.")
    nRC: int = Field(gt=0, description="Activate to activate, same bank.")
    nRTP: int = Field(gt=0, description="Read to precharge.")
    nCCD_S: int = Field(gt=0, description="Read to read, different bank group.")
    nCCD_L: int = Field(gt=0, description="Read to read, same bank group.")
    nCCD_R: int | None = Field(
        default=None, gt=0, description="Read to read, different rank/stack ID (default nCCD_S)."
    )
    nRRD_S: int = Field(gt=0, description="Activate to activate, different bank group.")
    nRRD_L: int = Field(gt=0, description="Activate to activate, same bank group.")
    nFAW: int = Field(gt=0, description="Window in which at most four activates may issue (per rank).")
    nRFC: int = Field(gt=0, description="All-bank refresh cycle time.")
    nREFI: int = Field(gt=0, description="Average interval between all-bank refreshes.")

    @model_validator(mode="after")
    def _consistent(self) -> DramTiming:
        if self.nCCD_L < self.nCCD_S or self.nRRD_L < self.nRRD_S:
            raise ValueError("same-bank-group spacings (nCCD_L, nRRD_L) must not be below nCCD_S, nRRD_S")
        if self.nRFC >= self.nREFI:
            raise ValueError(f"nRFC ({self.nRFC}) must be below nREFI ({self.nREFI})")
        return self


class DramController(BaseModel):
    """The memory controller in front of each channel (what Ramulator's generic controller does)."""

    model_config = _STRICT

    queue_depth: int = Field(default=32, gt=0, description="Read-queue entries per channel controller.")
    command_bus: Literal["single", "dual"] = Field(
        description="'dual': separate row and column command buses (HBM); 'single': one CA bus (DDR, LPDDR)."
    )
    act_cycles: float = Field(default=1.0, gt=0, description="Command-bus cycles an activate occupies.")
    rd_cycles: float = Field(default=1.0, gt=0, description="Command-bus cycles a read occupies.")
    pre_cycles: float = Field(default=1.0, gt=0, description="Command-bus cycles a precharge occupies.")
    refresh_scope: Literal["pseudo_channel", "rank"] = Field(
        default="rank", description="What one all-bank refresh blocks."
    )


class DramEnergy(BaseModel):
    """Energy of DRAM operations (per bit moved, per activation) and of the PIM units."""

    model_config = _STRICT

    act_pj_per_bit: float = Field(ge=0, description="Row activate+precharge energy per bit read out of the row.")
    cell_read_pj_per_bit: float = Field(ge=0, description="Column read from the sense amplifiers, per bit.")
    bank_to_io_pj_per_bit: float = Field(ge=0, description="Moving read data from the bank to the device IO, per bit.")
    io_pj_per_bit: float = Field(ge=0, description="Off-device transfer (TSV + interposer, or DDR bus), per bit.")
    pu_op_factor: float = Field(
        default=3.0, ge=0, description="PU energy per bit processed as a multiple of the in-bank read energy."
    )
    ru_pj_per_op: float = Field(default=0.32, ge=0, description="Reduction-unit energy per FP16 operation, pJ.")
    background_mw: float = Field(default=0.0, ge=0, description="Standby and refresh power of the whole device, mW.")
    source: str = Field(min_length=1, description="Where the figures come from.")


class PimUnits(BaseModel):
    """Processing units (PUs, in the banks) and reduction units (RUs) of a DRAM-PIM device (PAM §5.2)."""

    model_config = _STRICT

    pu_lanes: int = Field(gt=0, description="FP16 multiply-add lanes per PU.")
    pu_clock_mhz: float = Field(gt=0, description="PU clock, MHz.")
    pu_buffer_bytes: int = Field(gt=0, description="PU operand/partial buffer, bytes.")
    pu_read_bytes: int = Field(gt=0, description="Bytes one bank hands its PU per PIM column command.")
    ru_per_bank_group: int = Field(ge=0, description="Reduction units per bank group.")
    ru_central: int = Field(ge=0, description="Reduction units on the logic die / central buffer.")
    ru_lanes: int = Field(gt=0, description="FP16 lanes of one RU's vector-scalar multiplier.")
    ru_exp_units: int = Field(gt=0, description="Exponent units per RU.")
    ru_clock_mhz: float = Field(gt=0, description="RU clock, MHz.")
    mac_spacing: int = Field(gt=0, description="Cycles between all-bank PIM column commands without a power limit.")
    mac_spacing_power_limited: int = Field(
        gt=0, description="Cycles between all-bank PIM column commands under the peak-power limit."
    )
    paper_power_limited_flops: float | None = Field(
        default=None, gt=0, description="The paper's quoted per-device compute under the power limit (PAM §5.2)."
    )

    @model_validator(mode="after")
    def _spacing(self) -> PimUnits:
        if self.mac_spacing_power_limited < self.mac_spacing:
            raise ValueError("mac_spacing_power_limited must not be below mac_spacing")
        return self


class DramDeviceConfig(BaseModel):
    """A DRAM device (one HBM stack, one DIMM, one DDR5/LPDDR5 module), optionally with PIM units."""

    model_config = _STRICT

    name: str = Field(description="Preset name.")
    kind: Literal["dram"] = Field(description="Device family: 'dram' (plain or PIM DRAM).")
    description: str = Field(description="One line on what this device is.")
    org: DramOrg = Field(description="Organisation.")
    timing: DramTiming = Field(description="Timing parameters.")
    controller: DramController = Field(description="Memory controller model.")
    pim: PimUnits | None = Field(default=None, description="PIM units; absent for plain DRAM.")
    energy: DramEnergy = Field(description="Energy figures.")
    cost: Cost = Field(description="Cost estimate.")


class SsdEnergy(BaseModel):
    """OpenSSD-style flash energy: page reads, channel transfers, controller PUs."""

    model_config = _STRICT

    page_read_uj: float = Field(ge=0, description="Energy of one page read (array sensing to page register), uJ.")
    channel_pj_per_bit: float = Field(ge=0, description="Flash channel (ONFI) transfer energy per bit, pJ.")
    pu_pj_per_op: float = Field(ge=0, description="Controller PU energy per FP16 operation, pJ.")
    idle_w: float = Field(default=0.0, ge=0, description="Idle power of the SSD, W.")
    source: str = Field(min_length=1, description="Where the figures come from.")


class SsdDeviceConfig(BaseModel):
    """One SSD with PIM in its controller (PAM Table 1 flash, §5.2 PUs and RUs)."""

    model_config = _STRICT

    name: str = Field(description="Preset name.")
    kind: Literal["ssd"] = Field(description="Device family: 'ssd'.")
    description: str = Field(description="One line on what this device is.")
    channels: int = Field(gt=0, description="Flash channels of this SSD.")
    dies_per_channel: int = Field(gt=0, description="Flash dies sharing one channel.")
    planes_per_die: int = Field(default=1, gt=0, description="Planes one multi-plane read senses at once.")
    page_bytes: int = Field(gt=0, description="Flash page, bytes.")
    channel_gb: float = Field(gt=0, description="Capacity behind one channel, GB (1e9 bytes).")
    channel_mtps: float = Field(gt=0, description="Channel (ONFI/Toggle) transfer rate, MT/s.")
    channel_bytes_per_transfer: int = Field(default=1, gt=0, description="Channel width, bytes per transfer.")
    transfer_chunk_bytes: int = Field(
        gt=0, description="Smallest piece of a sensed page moved over the channel (ECC codeword), bytes."
    )
    tR_us: float = Field(gt=0, description="Page read (array to page register) latency, us.")
    command_us: float = Field(default=0.0, ge=0, description="Per-page command and addressing overhead, us.")
    pu_count: int = Field(gt=0, description="PUs in the SSD controller.")
    pu_lanes: int = Field(gt=0, description="FP16 MAC lanes per PU.")
    pu_clock_mhz: float = Field(gt=0, description="PU clock, MHz.")
    pu_buffer_bytes: int = Field(gt=0, description="PU buffer, bytes.")
    ru_count: int = Field(ge=0, description="Reduction units in the controller.")
    ru_lanes: int = Field(gt=0, description="FP16 lanes per RU.")
    power_limited_flops: float | None = Field(
        default=None, gt=0, description="The paper's per-device compute under its peak-power limit (PAM §5.2)."
    )
    host_link: str = Field(description="Link preset to the host.")
    energy: SsdEnergy = Field(description="Energy figures.")
    cost: Cost = Field(description="Cost estimate.")

    @model_validator(mode="after")
    def _chunk(self) -> SsdDeviceConfig:
        if self.page_bytes % self.transfer_chunk_bytes:
            raise ValueError("page_bytes must be a multiple of transfer_chunk_bytes")
        return self


class GemmTile(BaseModel):
    """One thread-block tile shape a GEMM library may pick."""

    model_config = _STRICT

    m: int = Field(gt=0, description="Tile rows (tokens).")
    n: int = Field(gt=0, description="Tile columns (outputs).")


class GpuEnergy(BaseModel):
    """GPU energy per operation and per bit (AttAcc's table)."""

    model_config = _STRICT

    flop_pj: float = Field(ge=0, description="Energy per 16-bit FLOP on tensor cores, pJ.")
    hbm_pj_per_bit: float = Field(ge=0, description="HBM read energy per bit (cell to GPU), pJ.")
    onchip_pj_per_bit: float = Field(ge=0, description="L2 + L1 + register traffic per bit of operand, pJ.")
    idle_w: float = Field(default=0.0, ge=0, description="Idle power, W.")
    source: str = Field(min_length=1, description="Where the figures come from.")


class GpuDeviceConfig(BaseModel):
    """A host GPU priced as a roofline with achievable fractions."""

    model_config = _STRICT

    name: str = Field(description="Preset name.")
    kind: Literal["gpu"] = Field(description="Device family: 'gpu'.")
    description: str = Field(description="One line on what this device is.")
    peak_flops: float = Field(gt=0, description="Dense 16-bit tensor-core peak, FLOP/s.")
    sms: int = Field(gt=0, description="Streaming multiprocessors.")
    hbm_gb: float = Field(gt=0, description="HBM capacity, GB as vendors state it (2^30 bytes).")
    hbm_bandwidth: float = Field(gt=0, description="HBM peak bandwidth, bytes/s.")
    l2_bytes: int = Field(gt=0, description="L2 cache, bytes.")
    compute_efficiency: float = Field(gt=0, le=1, description="Sustained fraction of peak FLOP/s of one busy SM.")
    memory_efficiency: float = Field(gt=0, le=1, description="Sustained fraction of peak HBM bandwidth when streaming.")
    attention_prefill_efficiency: float = Field(
        gt=0, le=1, description="FlashAttention forward: sustained fraction of peak FLOP/s."
    )
    attention_decode_efficiency: float = Field(
        gt=0, le=1, description="FlashDecoding: sustained fraction of peak HBM bandwidth."
    )
    launch_s: float = Field(ge=0, description="Per-kernel launch and prologue/epilogue overhead, s.")
    tiles: list[GemmTile] = Field(min_length=1, description="Tile shapes the GEMM library chooses among.")
    memory_reserve: float = Field(
        default=0.1, ge=0, lt=1, description="Fraction of HBM kept for activations and workspace (vLLM: 1 - 0.9)."
    )
    nvlink: str = Field(description="Link preset between GPUs of the node.")
    energy: GpuEnergy = Field(description="Energy figures.")
    cost: Cost = Field(description="Cost estimate (board price over HBM capacity).")


class LinkConfig(BaseModel):
    """A point-to-point link: bandwidth per direction, latency, achievable efficiency, energy."""

    model_config = _STRICT

    name: str = Field(description="Preset name.")
    description: str = Field(description="One line on what this link is.")
    bandwidth: float = Field(gt=0, description="Peak bandwidth per direction, bytes/s.")
    efficiency: float = Field(gt=0, le=1, description="Achievable fraction of peak for large transfers.")
    latency_s: float = Field(ge=0, description="Per-message latency (software + hardware), s.")
    energy_pj_per_bit: float = Field(ge=0, description="Transfer energy per bit, pJ.")
    source: str = Field(min_length=1, description="Where the figures come from.")


DeviceConfig = Annotated[DramDeviceConfig | SsdDeviceConfig | GpuDeviceConfig, Field(discriminator="kind")]
_KINDS: dict[str, type[BaseModel]] = {"dram": DramDeviceConfig, "ssd": SsdDeviceConfig, "gpu": GpuDeviceConfig}


def _resolve(kind: str, name_or_path: str | Path) -> tuple[Path, str]:
    """The YAML file of a preset name or a path, and the label errors should use."""
    text = str(name_or_path)
    path = Path(text)
    if text.endswith((".yaml", ".yml")) or path.is_file():
        return path, text
    known = list_presets(kind)
    if text not in known:
        label = "device" if kind == "devices" else "link"
        raise UserError(f"unknown {label} preset '{text}' (known: {', '.join(known) or 'none'})")
    return preset_dir(kind) / f"{text}.yaml", f"{text}.yaml"


def load_device_config(name_or_path: str | Path) -> DramDeviceConfig | SsdDeviceConfig | GpuDeviceConfig:
    """A device preset by name (``pamkv hw`` lists them) or a device YAML file; its ``kind`` picks the schema."""
    path, label = _resolve("devices", name_or_path)
    data, node = read_yaml(path)
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in _KINDS:
        raise UserError(f"{label}: field 'kind': must be one of {', '.join(_KINDS)} (got {kind!r})")
    cfg = validate(_KINDS[kind], data, label, node)
    assert isinstance(cfg, DramDeviceConfig | SsdDeviceConfig | GpuDeviceConfig)
    return cfg


def load_link_config(name_or_path: str | Path) -> LinkConfig:
    """A link preset by name or a link YAML file."""
    path, label = _resolve("links", name_or_path)
    data, node = read_yaml(path)
    return validate(LinkConfig, data, label, node)
