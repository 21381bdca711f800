"""The procedural cell types of the synthetic neuropil and their parameters.

Four neuron types and two glia types. Each differs from the others in several
statistics at once, none of which decides the type in a single 4–5 µm view:
calibres overlap, spines and boutons are sparse enough that a short stretch may
show none, and myelin covers only the main axon of one type. Averaged over
10–25 µm of a cell the differences add up. Lengths in µm (the specs below hold
nm); the y axis is the radial (pial) axis.

Cells with a soma:

==========  ======  ===============  ==============================  =======  ===============
type        class   soma r, shape    branches at the soma (r)        spines   branching
==========  ======  ===============  ==============================  =======  ===============
pyramidal   neuron  5.5–6.5 tear     1 apical (1.0–1.3, to +y),      1.0 ap.  0.06–0.08 /µm,
                    drop (apex +y)   4–6 basal (0.5–0.7), 1 axon     1.4 bas. 35–45°
projection  neuron  6.0–7.0 round    5–7 dendrites (0.6–0.85),       0.6      0.05 /µm, 40°
                                     1 myelinated axon
basket      neuron  4.5–5.5 round    5–7 dendrites (0.4–0.55),       0.05     0.10 /µm, 70°
                                     1 axon
bipolar     neuron  3.5–4.5 spindle  2 dendrites (0.3–0.4), up and   0.15     0.03 /µm, 30°
                                     down; 1 axon
astrocyte   glia    3.5–4.5 round    5–8 processes (0.5–0.8)         –        0.4 /µm, 60°
microglia   glia    2.5–3.2 oblong   4–6 processes (0.25–0.35)       –        0.15 /µm, 70°
==========  ======  ===============  ==============================  =======  ===============

Axons, and how much of each type there is:

==========  =========  ======================  ======  ===============  ===========  =======
type        axon r     boutons: spacing, r     myelin  axon branching   fragments    somata
==========  =========  ======================  ======  ===============  ===========  =======
pyramidal   0.13–0.22  5, 0.28–0.38            –       0.05 /µm, 70°    2.1 / 0.3    0.05
projection  0.28–0.35  4 (collaterals), 0.3–4  0.18    0.04 /µm, 60°    0.06 / 0.12  0.02
basket      0.15–0.23  2, 0.35–0.5, mito-rich  –       0.2 /µm, 80°,    1.0 / 0.08   0.02
                                                       planar (⊥ y)
bipolar     0.11–0.17  3, 0.2–0.28             –       0.08 /µm, 40°    0.9 / 0.07   0.02
astrocyte   –          –                       –       –                0.2          0.03
microglia   –          –                       –       –                0.04         0.01
==========  =========  ======================  ======  ===============  ===========  =======

"fragments": µm of axon / of dendrite (glia: process) per µm³ of neuropil whose
soma lies elsewhere, as most segments in real EM volumes are; "somata": per
1000 µm³. Both are scaled by ``NeuropilConfig.density`` and ``soma_density``
and by the type's weight in ``NeuropilConfig.cell_types``. Myelin is the
sheath thickness on the projection type's main axon (nodes of Ranvier every
12–18 µm); its collaterals are bare.

Texture differs too: dendrites hold long mitochondria, axons short ones,
basket boutons are large and mitochondria-rich, astrocytes are pale with
glycogen granules and fill gaps between neurites with thin sheets, microglia
are dark with lysosomes. Cytoplasm brightness differs by type and per cell.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .cell import Compartment


@dataclass(frozen=True)
class BranchSpec:
    """How one kind of branch grows: a walk with branching, lengths in nm.

    ``branch_rate`` (per µm) and ``branch_angle`` (degrees) give side branches
    up to ``max_order``; a child starts at ``child_radius`` times its parent's
    local radius and is ``child_length`` times as long. ``bias`` is added to
    the walk direction at each 1 µm step; ``planar`` damps the y component.
    """

    compartment: Compartment
    radius: tuple[float, float]
    length: tuple[float, float]
    taper: float = 0.5
    tortuosity: float = 0.2
    bias: tuple[float, float, float] = (0.0, 0.0, 0.0)
    planar: float = 0.0
    branch_rate: float = 0.0
    branch_angle: float = 45.0
    max_order: int = 0
    child_radius: float = 0.7
    child_length: float = 0.6
    spines: float = 0.0
    bouton_spacing: float = 0.0
    bouton_radius: tuple[float, float] = (0.0, 0.0)
    bouton_mito: float = 0.3
    myelin: float = 0.0
    mito_rate: float = 0.2
    mito_length: tuple[float, float] = (500.0, 1500.0)
    lysosome_rate: float = 0.0
    fill: bool = False


@dataclass(frozen=True)
class Primary:
    """Branches leaving the soma: how many and which way (``random``, ``up``,
    ``down``, ``vertical`` = one up and one down)."""

    branch: BranchSpec
    count: tuple[int, int]
    direction: str = "random"


@dataclass(frozen=True)
class Fragment:
    """Pieces of a type's neurites whose soma lies elsewhere: ``density`` in
    µm of cable per µm³, ``direction`` ``random``, ``vertical`` or ``planar``."""

    branch: BranchSpec
    density: float
    direction: str = "random"


@dataclass(frozen=True)
class CellTypeSpec:
    """One cell type: soma, primary branches, fragments and texture."""

    name: str
    cell_class: str  # "neuron" or "glia"
    soma_radius: tuple[float, float]
    soma_density: float  # somata per 1000 µm³
    primaries: tuple[Primary, ...]
    fragments: tuple[Fragment, ...]
    soma_shape: str = "round"  # "round", "teardrop" (+y apex), "spindle" (±y), "elongated"
    nucleus: float = 0.6  # nucleus radius / soma radius
    shade: float = 0.0  # cytoplasm grey-level offset
    soma_mitos: float = 0.04  # mitochondria per µm³ of soma


D, A, X, G = Compartment.DENDRITE, Compartment.APICAL, Compartment.AXON, Compartment.GLIA

_PYR_BASAL = BranchSpec(
    D,
    (500, 700),
    (6000, 8000),
    taper=0.45,
    tortuosity=0.25,
    branch_rate=0.08,
    branch_angle=45,
    max_order=2,
    child_radius=0.7,
    child_length=0.7,
    spines=1.4,
    mito_rate=0.35,
    mito_length=(800, 2500),
)
_PYR_AXON = BranchSpec(
    X,
    (130, 220),
    (6000, 8000),
    taper=0.9,
    tortuosity=0.2,
    bias=(0, -0.2, 0),
    branch_rate=0.05,
    branch_angle=70,
    max_order=2,
    child_radius=0.9,
    child_length=0.8,
    bouton_spacing=5.0,
    bouton_radius=(280, 380),
    mito_rate=0.12,
    mito_length=(400, 900),
)
_PROJ_AXON = BranchSpec(
    X,
    (280, 350),
    (7000, 8000),
    taper=0.95,
    tortuosity=0.05,
    branch_rate=0.04,
    branch_angle=60,
    max_order=1,
    child_radius=0.35,
    child_length=0.8,
    bouton_spacing=4.0,
    bouton_radius=(300, 400),
    myelin=180.0,
    mito_rate=0.1,
    mito_length=(600, 1500),
)
_PROJ_DEND = BranchSpec(
    D,
    (600, 850),
    (6000, 8000),
    taper=0.45,
    tortuosity=0.2,
    branch_rate=0.05,
    branch_angle=40,
    max_order=2,
    child_radius=0.7,
    child_length=0.7,
    spines=0.6,
    mito_rate=0.35,
    mito_length=(800, 2500),
)
_BASKET_DEND = BranchSpec(
    D,
    (400, 550),
    (5000, 7000),
    taper=0.5,
    tortuosity=0.15,
    branch_rate=0.1,
    branch_angle=70,
    max_order=2,
    child_radius=0.75,
    child_length=0.6,
    spines=0.05,
    mito_rate=0.5,
    mito_length=(600, 2000),
)
_BASKET_AXON = BranchSpec(
    X,
    (150, 230),
    (6000, 8000),
    taper=0.9,
    tortuosity=0.3,
    planar=0.3,
    branch_rate=0.2,
    branch_angle=80,
    max_order=3,
    child_radius=0.9,
    child_length=0.6,
    bouton_spacing=2.0,
    bouton_radius=(350, 500),
    bouton_mito=0.8,
    mito_rate=0.4,
    mito_length=(400, 1000),
)
_BIP_DEND = BranchSpec(
    D,
    (300, 400),
    (7000, 8000),
    taper=0.5,
    tortuosity=0.12,
    branch_rate=0.03,
    branch_angle=30,
    max_order=1,
    child_radius=0.8,
    child_length=0.6,
    spines=0.15,
    mito_rate=0.25,
    mito_length=(600, 1800),
)
_BIP_AXON = BranchSpec(
    X,
    (110, 170),
    (6000, 8000),
    taper=0.9,
    tortuosity=0.2,
    bias=(0, -0.15, 0),
    branch_rate=0.08,
    branch_angle=40,
    max_order=2,
    child_radius=0.9,
    child_length=0.7,
    bouton_spacing=3.0,
    bouton_radius=(200, 280),
    mito_rate=0.1,
    mito_length=(300, 800),
)
_ASTRO = BranchSpec(
    G,
    (500, 800),
    (5000, 7000),
    taper=0.3,
    tortuosity=0.3,
    branch_rate=0.4,
    branch_angle=60,
    max_order=3,
    child_radius=0.55,
    child_length=0.5,
    mito_rate=0.1,
    mito_length=(300, 800),
    fill=True,
)
_MICRO = BranchSpec(
    G,
    (250, 350),
    (6000, 8000),
    taper=0.35,
    tortuosity=0.35,
    branch_rate=0.15,
    branch_angle=70,
    max_order=3,
    child_radius=0.7,
    child_length=0.6,
    mito_rate=0.05,
    mito_length=(300, 600),
    lysosome_rate=0.2,
)

CELL_TYPES: dict[str, CellTypeSpec] = {
    spec.name: spec
    for spec in (
        CellTypeSpec(
            "pyramidal",
            "neuron",
            (5500, 6500),
            0.05,
            (
                Primary(
                    replace(
                        _PYR_BASAL,
                        compartment=A,
                        radius=(1000, 1300),
                        taper=0.35,
                        tortuosity=0.08,
                        bias=(0, 0.35, 0),
                        branch_rate=0.06,
                        branch_angle=35,
                        child_radius=0.45,
                        child_length=0.8,
                        spines=1.0,
                    ),
                    (1, 1),
                    "up",
                ),
                Primary(_PYR_BASAL, (4, 6)),
                Primary(_PYR_AXON, (1, 1), "down"),
            ),
            (Fragment(_PYR_AXON, 2.1), Fragment(replace(_PYR_BASAL, radius=(450, 750)), 0.3)),
            soma_shape="teardrop",
        ),
        CellTypeSpec(
            "projection",
            "neuron",
            (6000, 7000),
            0.02,
            (Primary(_PROJ_DEND, (5, 7)), Primary(_PROJ_AXON, (1, 1), "down")),
            (Fragment(_PROJ_AXON, 0.06), Fragment(replace(_PROJ_DEND, radius=(450, 750)), 0.12)),
            shade=-4.0,
        ),
        CellTypeSpec(
            "basket",
            "neuron",
            (4500, 5500),
            0.02,
            (Primary(_BASKET_DEND, (5, 7)), Primary(_BASKET_AXON, (1, 1))),
            (Fragment(_BASKET_AXON, 1.0, "planar"), Fragment(_BASKET_DEND, 0.08)),
            shade=-8.0,
            soma_mitos=0.08,
        ),
        CellTypeSpec(
            "bipolar",
            "neuron",
            (3500, 4500),
            0.02,
            (Primary(_BIP_DEND, (2, 2), "vertical"), Primary(_BIP_AXON, (1, 1), "down")),
            (Fragment(_BIP_AXON, 0.9), Fragment(_BIP_DEND, 0.07, "vertical")),
            soma_shape="spindle",
            nucleus=0.65,
            shade=4.0,
        ),
        CellTypeSpec(
            "astrocyte",
            "glia",
            (3500, 4500),
            0.03,
            (Primary(_ASTRO, (5, 8)),),
            (Fragment(replace(_ASTRO, radius=(300, 500), max_order=2), 0.2),),
            nucleus=0.65,
            shade=14.0,
            soma_mitos=0.02,
        ),
        CellTypeSpec(
            "microglia",
            "glia",
            (2500, 3200),
            0.01,
            (Primary(_MICRO, (4, 6)),),
            (Fragment(replace(_MICRO, radius=(150, 250), max_order=2), 0.04),),
            soma_shape="elongated",
            nucleus=0.7,
            shade=-22.0,
            soma_mitos=0.02,
        ),
    )
}

#: Type names in a fixed order: index = type code in the internal tables.
TYPE_NAMES: tuple[str, ...] = tuple(CELL_TYPES)


def expected_cable(branch: BranchSpec) -> float:
    """Mean cable (µm) of one tree grown from ``branch`` with its side branches."""
    length = sum(branch.length) / 2000.0
    count, total = 1.0, 0.0
    for _ in range(branch.max_order + 1):
        total += count * length
        count *= branch.branch_rate * length
        length *= branch.child_length
    return total
