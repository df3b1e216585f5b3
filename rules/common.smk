# Helpers shared by the rules: config look-ups and input functions.
# Paths are relative to the working directory (the repository, or --directory).

import glob as _glob
import hashlib as _hashlib
import json as _json
import os as _os
import re

from snakemake.utils import validate

validate(config, "../schemas/config.schema.yaml", set_default=True)

EXPORT_SUFFIXES = (".csv", ".tsv", ".txt")
BATCH_ID = "[A-Za-z0-9_.-]+"  # the `batch` wildcard's constraint in the Snakefile
STAGES = ("before", "after")


class ConfigError(ValueError):
    """A configuration that is valid JSON-schema-wise but inconsistent."""


def spec_cfg(specimen):
    return config["specimens"][specimen]


def area_cfg(specimen, area):
    return spec_cfg(specimen)["areas"][area]


_REQUIRED = object()  # `default` of the look-ups below: the key must be there


def _look_up(section, keys, default, transform):
    value = section
    for key in keys:
        if default is not _REQUIRED and key not in value:
            value = default
            break
        value = value[key]
    return value if transform is None else transform(value)


def spec_param(*keys, default=_REQUIRED, transform=None):
    """A params function of the wildcards: one value of the specimen's config.

    ``spec_param("stats", "seed")`` returns ``f(wildcards)`` giving
    ``config["specimens"][wildcards.specimen]["stats"]["seed"]``.

    Parameters
    ----------
    *keys : str
        Path of the value below the specimen's section.
    default : object, optional
        Value when a key is absent (as ``dict.get``); without it an absent
        key raises ``KeyError``.
    transform : callable, optional
        Applied to the value found (or the default), e.g. ``lambda v: v or 10.0``.

    Returns
    -------
    callable
        ``f(wildcards) -> object``, for a rule's ``params:``.
    """

    def param(wildcards):
        return _look_up(spec_cfg(wildcards.specimen), keys, default, transform)

    return param


def learn_param(*keys, default=_REQUIRED, transform=None):
    """`spec_param` under the specimen's ``learning:`` section."""
    return spec_param("learning", *keys, default=default, transform=transform)


def area_param(*keys, default=_REQUIRED, transform=None):
    """`spec_param` under the area's section: ``areas[wildcards.area]``."""

    def param(wildcards):
        return _look_up(area_cfg(wildcards.specimen, wildcards.area), keys, default, transform)

    return param


def _host_sees_gpu():
    """Whether this machine shows an NVIDIA GPU (its device nodes; torch is not imported)."""
    visible = _os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    # the device nodes /dev/nvidia0, ... (the path built, not written: the linter
    # takes any absolute path for a workflow's input)
    return bool(_glob.glob(_os.path.join(_os.sep, "dev", "nvidia[0-9]*")))


def gpu_request(device_param):
    """A resources function: the GPUs a job asks for, following its ``device``.

    ``device_param`` is the rule's params function of the device
    (``learn_param("device")``, ...). ``cuda`` asks for one GPU, ``cpu`` for
    none, ``auto`` for one when the machine that plans the jobs shows a GPU
    (a workstation with one; a cluster's login node usually has none: set
    ``device: cuda`` there, or ``--set-resources <rule>:gpu=1``). On Slurm the
    executor plugin turns ``gpu`` (and an optional ``gpu_model``) into
    ``sbatch --gpus``; 0 adds nothing, so a CPU-only cluster gets no GPU request.
    """

    def gpus(wildcards):
        device = str(device_param(wildcards) or "auto").lower()
        if device.startswith("cuda"):
            return 1
        return int(device == "auto" and _host_sees_gpu())

    return gpus


def is_virtual(specimen):
    return "virtual" in spec_cfg(specimen)


def virtual_batch_names(specimen):
    nx, ny = spec_cfg(specimen)["virtual"]["n_batches"]
    return [f"b{i + 1:02d}" for i in range(nx * ny)]


def has_after(specimen, area):
    return "after" in area_cfg(specimen, area)


def indentation_dir(specimen, area):
    a = area_cfg(specimen, area)
    if "virtual_indentation" in a:
        return f"results/{specimen}/{area}/virtual_indentation"
    if "indentation" not in a:
        raise ConfigError(
            f"config: specimens.{specimen}.areas.{area} has neither `indentation` "
            "(a folder of exports) nor `virtual_indentation`")
    return a["indentation"]


def _discovered_exports(specimen, area):
    """Map batch id -> export file found in the area's indentation folder."""
    folder = indentation_dir(specimen, area)
    found = {}
    for path in sorted(_glob.glob(_os.path.join(folder, "*"))):
        stem, suffix = _os.path.splitext(_os.path.basename(path))
        if suffix.lower() not in EXPORT_SUFFIXES:
            continue
        if not re.fullmatch(BATCH_ID, stem):
            raise ConfigError(
                f"{path}: the file name gives the batch id {stem!r}, but a batch id may hold "
                "only letters, digits, '_', '.' and '-'; rename the file (e.g. "
                f"{re.sub(r'[^A-Za-z0-9_.-]', '_', stem)}{suffix})")
        if stem in found:
            raise ConfigError(
                f"{folder}: duplicate batch id {stem!r}: both {found[stem]} and {path}; "
                "each batch must have exactly one export file")
        found[stem] = path
    return found


def batches(specimen, area):
    """Batch ids of an area: configured, generated, or discovered on disk."""
    a = area_cfg(specimen, area)
    if "batches" in a:
        return list(a["batches"])
    if "virtual_indentation" in a:
        return ["v01"]
    if is_virtual(specimen):
        return virtual_batch_names(specimen)
    found = _discovered_exports(specimen, area)
    if not found:
        raise ConfigError(
            f"{indentation_dir(specimen, area)}: no indentation export "
            f"(*{', *'.join(EXPORT_SUFFIXES)}) found for specimen {specimen}, area {area}")
    return list(found)


def export_file(wildcards):
    s, a, b = wildcards.specimen, wildcards.area, wildcards.batch
    if is_virtual(s) or "virtual_indentation" in area_cfg(s, a):
        return f"{indentation_dir(s, a)}/{b}.csv"
    found = _discovered_exports(s, a)
    if b not in found:
        raise ConfigError(f"{indentation_dir(s, a)}: no export file for batch {b!r}")
    return found[b]


def _layout_files(folder):
    """``layout.csv`` of a user's tile folder and every tile file it names.

    Read when the DAG is built (the tiles exist before the run), so that
    overwriting one tile or editing the layout reruns that stitching and what
    depends on it. A missing layout is returned as such: Snakemake then names
    it as the missing input.
    """
    import csv as _csv

    layout = _os.path.join(folder, "layout.csv")
    if not _os.path.exists(layout):
        return [layout]
    with open(layout, newline="") as fh:
        names = [row.get("file") for row in _csv.DictReader(fh)]
    if any(not n for n in names):
        raise ConfigError(f"{layout}: a row without a `file` value; expected columns "
                          "tile, file, row, col, x_um, y_um")
    return [layout] + [_os.path.join(folder, n) for n in names]


def tiles_input(wildcards):
    """Inputs of ``stitch_tiles``: ``tiles`` (the folder the script reads) and,
    for a user's folder, ``tile_files`` (its layout and tiles, for reruns)."""
    s, a_name = wildcards.specimen, wildcards.area
    a = area_cfg(s, a_name)
    if "image" in a:
        return {"tiles": f"results/{s}/{a_name}/image_layout"}
    folder = a[wildcards.stage]
    if is_virtual(s):  # a directory() output of the generator: Snakemake tracks it
        return {"tiles": folder}
    return {"tiles": folder, "tile_files": _layout_files(folder)}


def all_areas(specimen):
    """Every area of a specimen, whatever its role."""
    return list(spec_cfg(specimen)["areas"])


def has_image(specimen, area):
    """Whether an area has micrographs (tiles or an image); else it is indentation only."""
    a = area_cfg(specimen, area)
    return is_virtual(specimen) or "before" in a or "image" in a


def indent_areas(specimen):
    """Areas whose indents enter the statistics (role `train`), with or without an image."""
    return [a for a in all_areas(specimen) if area_cfg(specimen, a)["role"] == "train"]


def areas(specimen):
    """Areas whose indents go into the dataset: role `train`, with micrographs."""
    return [a for a in indent_areas(specimen) if has_image(specimen, a)]


def stats_inputs(specimen):
    """Indent tables the deconvolution pools: located indents, or the import of an area without image."""
    return [
        f"results/{specimen}/{a}/located/{b}.csv" if has_image(specimen, a)
        else f"results/{specimen}/{a}/indents/{b}.csv"
        for a in indent_areas(specimen)
        for b in batches(specimen, a)
    ]


def stats_areas(specimen):
    """The area of each file of :func:`stats_inputs`, same order."""
    return [a for a in indent_areas(specimen) for _ in batches(specimen, a)]


def _phase_set_of(specimen):
    """The specimen's phase set (microprop.phases.phase_set), read without importing the library at top level."""
    import sys as _sys

    lib = _os.path.join(workflow.basedir, "scripts")
    if lib not in _sys.path:
        _sys.path.insert(0, lib)
    from microprop.phases import phase_set

    return phase_set(spec_cfg(specimen).get("phases"), where=f"specimens.{specimen}.phases")


def has_hydration(specimen):
    return _phase_set_of(specimen).hydration == "cement"


def check_specimens():
    """Refuse at start what the schema cannot say: phase sets, image areas without a pixel size."""
    for s in config["specimens"]:
        ps = _phase_set_of(s)
        image_areas = [a for a in all_areas(s) if has_image(s, a)]
        if image_areas and "pixel_size_nm" not in spec_cfg(s):
            raise ConfigError(
                f"config: specimens.{s}.pixel_size_nm is missing; the areas {image_areas} have "
                "micrographs, whose pixel size (nm/px) the workflow needs")
        if image_areas and ps.name != "cement":
            raise ConfigError(
                f"config: specimens.{s} uses the phase set {ps.name!r} with micrographs "
                f"(areas {image_areas}); the image steps (calibration, virtual specimens, "
                "segmentation) know the cement phases only so far. Use `phases: cement`, or "
                "give this specimen indentation exports only (areas with `indentation:` alone)")
        if is_virtual(s) and ps.name != "cement":
            raise ConfigError(f"config: specimens.{s}: the virtual specimen generator makes "
                              "cement pastes only; use `phases: cement`")


def map_areas(specimen):
    """Areas the trained model maps without having seen them (role `map`)."""
    return [a for a in all_areas(specimen) if area_cfg(specimen, a)["role"] == "map"]


def map_targets(specimen):
    """The mapped targets, in the order of the joint fit (E, then H)."""
    return [t for t in ("E_GPa", "H_GPa") if t in learn_cfg(specimen)["targets"]]


def map_files(w, name):
    """One map_area output per mapped target, e.g. ``grid_coarse_{target}.npy``."""
    return [f"results/{w.specimen}/maps/{w.area}/{name.format(target=t)}"
            for t in map_targets(w.specimen)]


def map_truth(w):
    """Truth inputs of map_statistics: virtual specimens only."""
    if not is_virtual(w.specimen):
        return {}
    return {
        "truth_map": f"resources/truth/{w.specimen}/{w.area}",
        "stitch": f"results/{w.specimen}/{w.area}/stitch_before.csv",
        "truth_indents": [f"resources/truth/{w.specimen}/{a}" for a in areas(w.specimen)],
    }


def located_files(specimen, area=None):
    return [
        f"results/{specimen}/{a}/located/{b}.csv"
        for a in ([area] if area else areas(specimen))
        for b in batches(specimen, a)
    ]


def shard_files(wildcards):
    s = wildcards.specimen
    return [f"results/{s}/{a}/shards/{b}.h5" for a in areas(s) for b in batches(s, a)]


DATASET_KEYS = ("pixel_size_nm", "virtual", "indentation", "calibration", "dataset")


def config_sha256(wildcards):
    """SHA-256 of the configuration a specimen's dataset depends on.

    Recorded in the dataset; keys that only act downstream (statistics,
    learning, mapping areas) are left out so that changing them does not
    rebuild the dataset and retrain every model.
    """
    s = wildcards.specimen
    cfg = {k: v for k, v in spec_cfg(s).items() if k in DATASET_KEYS}
    cfg["areas"] = {a: area_cfg(s, a) for a in areas(s)}
    blob = _json.dumps(cfg, sort_keys=True).encode()
    return _hashlib.sha256(blob).hexdigest()


def code_version():
    """microprop's version, read from the library without importing it."""
    init = _os.path.join(workflow.basedir, "scripts", "microprop", "__init__.py")
    with open(init) as fh:
        return re.search(r'__version__ = "([^"]+)"', fh.read()).group(1)


def locate_inputs(w):
    s, a = w.specimen, w.area
    inp = {
        "indents": f"results/{s}/{a}/indents/{w.batch}.csv",
        "before": f"results/{s}/{a}/mosaic_before.zarr",
    }
    if locate_mode(s, a) == "marks":
        inp["after"] = f"results/{s}/{a}/mosaic_after.zarr"
        inp["shift"] = f"results/{s}/{a}/after_to_before.json"
    return inp


def locate_mode(specimen, area):
    if not has_after(specimen, area):
        return "nominal"
    return spec_cfg(specimen)["indentation"]["locate"]


def learn_cfg(specimen):
    return spec_cfg(specimen)["learning"]


def centre_options(specimen):
    """`learning.centre` when CentreNet is trained, else None (its options then change no job)."""
    cfg = learn_cfg(specimen)
    return cfg["centre"] if cfg["architecture"] == "centre" else None


def n_members(specimen, split):
    c = learn_cfg(specimen)
    if split == "blocked" and c.get("ensemble_blocked") is not None:
        return c["ensemble_blocked"]
    return c["ensemble"]


def truth_sources(specimen):
    """The generator's truth of a specimen's dataset areas: (area, truth, generator) per source.

    A virtual specimen: its truth folder per area (``indents.csv``,
    ``truth.json``, ``phase_properties.csv``); a virtual indentation of a
    real image: per batch its ``_truth.csv`` and ``_SIMULATED.json``. Empty
    when any dataset area has no truth (measured indents): no ceiling then.
    """
    out = []
    for a in areas(specimen):
        if is_virtual(specimen):
            out.append((a, f"resources/truth/{specimen}/{a}", f"resources/truth/{specimen}/{a}"))
        elif "virtual_indentation" in area_cfg(specimen, a):
            d = f"results/{specimen}/{a}/virtual_indentation"
            out += [(a, f"{d}/{b}_truth.csv", f"{d}/{b}_SIMULATED.json") for b in batches(specimen, a)]
        else:
            return []
    return out


def ceiling_files(specimen):
    """The ceiling table and its predictions, or nothing for a specimen without truth."""
    if not truth_sources(specimen):
        return []
    return [f"results/{specimen}/learning/ceiling.csv",
            f"results/{specimen}/learning/ceiling_predictions.csv"]


def member_files(specimen, split, target, name):
    return [
        f"results/{specimen}/models/{split}/{target}/m{m}/{name}"
        for m in range(n_members(specimen, split))
    ]


def final_targets():
    out = []
    for s in config["specimens"]:
        out.append(f"results/{s}/stats/gmm_E_GPa.csv")
        out.append(f"results/{s}/stats/deconvolution_stability.csv")
        if has_hydration(s):
            out.append(f"results/{s}/stats/hydration.json")
        if areas(s):
            out += [f"results/{s}/dataset.h5", f"results/{s}/stats/baselines.csv"]
        for a in areas(s):
            out += [
                f"results/{s}/figures/overview_{a}.png",
                f"results/{s}/figures/calibration_{a}.png",
            ]
            if is_virtual(s):
                out.append(f"results/{s}/validation/{a}.json")
        if "learning" in spec_cfg(s) and areas(s):
            out.append(f"results/{s}/learning/summary.csv")
            for a in map_areas(s):
                out += [f"results/{s}/maps/{a}/table1_{t}.csv" for t in map_targets(s)]
                out.append(f"results/{s}/maps/{a}/table1.csv")
    return out


# ---------------------------------------------------------------- the porosity-map study

def por_cfg(study):
    return config["porosity_studies"][study]


def por_param(*keys, default=None):
    """A params function: a value of the study's config (``default`` when absent)."""

    def param(wildcards):
        value = por_cfg(wildcards.study)
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                return default
            value = value[key]
        return value

    return param


def por_classes(study):
    c = por_cfg(study)
    if "virtual" in c:
        return list(c["virtual"].get("classes") or DEMO_POROSITY_CLASS_NAMES)
    return list(c["classes"])


DEMO_POROSITY_CLASS_NAMES = ["S1", "S2", "S3"]


def por_image(wildcards):
    c = por_cfg(wildcards.study)
    if "virtual" in c:
        return f"resources/{wildcards.study}/{wildcards.cls}/bse.tif"
    return c["classes"][wildcards.cls]["image"]


def por_region(study, cls):
    """``[x0, y0, x1, y1]`` of a real class's image that is the class, or None (all of it)."""
    c = por_cfg(study)
    if "virtual" in c:
        return None
    return c["classes"][cls].get("region_px")


def por_scales(study):
    """The scales the study's classifier is trained on ([] without a classifier)."""
    c = por_cfg(study).get("classifier")
    if not c or not c.get("enabled", True):
        return []
    return list(c.get("scales") or ["MulF", "MicF"])


def por_relevance_scales(study):
    """The scales whose classifier is explained (relevance, regions, S2); [] when switched off."""
    r = por_cfg(study).get("relevance") or {}
    if not por_scales(study) or not r.get("enabled", True):
        return []
    return [s for s in (r.get("scales") or ["MulF"]) if s in por_scales(study)]


def porosity_targets():
    out = []
    for s in config.get("porosity_studies") or {}:
        out += [f"results/{s}/maps.h5", f"results/{s}/baseline/summary.json",
                f"results/{s}/figures/baseline_scatter.png"]
        if por_scales(s):
            out += [f"results/{s}/summary.csv", f"results/{s}/figures/classifier_confusion.png"]
        for scale in por_relevance_scales(s):
            out += [f"results/{s}/figures/relevance_{scale}.png", f"results/{s}/figures/correlation_{scale}.png",
                    f"results/{s}/correlation/{scale}/summary.json",
                    f"results/{s}/figures/shared_patterns_{scale}.png",
                    f"results/{s}/patterns/{scale}/summary.json",
                    f"results/{s}/explanation/{scale}/summary.csv"]
    return out


# -- the sample study (rules/samples.smk)


def smp_cfg(study):
    return config["sample_studies"][study]


def smp_param(*keys, default=None):
    """A params function: a value of the sample study's config (``default`` when absent)."""

    def param(wildcards):
        value = smp_cfg(wildcards.study)
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                return default
            value = value[key]
        return value

    return param


def smp_generated(study):
    c = smp_cfg(study)
    return "virtual" in c or "simulated_on_real" in c


def smp_tables(wildcards):
    """The study's sample and image tables: generated ones, or the user's (with every image listed)."""
    c = smp_cfg(wildcards.study)
    if smp_generated(wildcards.study):
        base = f"resources/samples/{wildcards.study}"
        return {"samples": f"{base}/samples.csv", "images": f"{base}/images.csv"}
    out = {"samples": c["samples"], "images": c["images"]}
    if _os.path.exists(c["images"]):             # every image is an input: an edited image reruns the study
        import pandas as _pd

        folder = _os.path.dirname(c["images"])
        out["files"] = [p if _os.path.isabs(p) else _os.path.join(folder, p)
                        for p in _pd.read_csv(c["images"])["image"].astype(str)]
    return out


def smp_folds(study):
    return list(range(int((smp_cfg(study).get("cv") or {}).get("n_folds", 5))))


def smp_cnn(study):
    return bool((smp_cfg(study).get("cnn") or {}).get("enabled", True))


def sample_targets():
    out = []
    for s in config.get("sample_studies") or {}:
        out += [f"results/{s}/samples.h5", f"results/{s}/glm/summary.json",
                f"results/{s}/figures/bright_fraction.png"]
        if smp_cnn(s):
            out += [f"results/{s}/model_table.csv", f"results/{s}/figures/observed_predicted.png",
                    f"results/{s}/figures/activation_maps.png"]
    return out
