"""``sampler:`` options, checked by the rules of every section and by building the method's
Optuna sampler once (nothing is trained)."""

from __future__ import annotations

from typing import Any

from sweeper.config import names
from sweeper.config.values import (
    MAX_SAMPLER_NUMBER,
    PROBABILITY,
    TRIAL_COUNT,
    check_bool,
    check_float,
    check_int,
    checked,
    err,
    mapping,
)

# Sampler options by name (passed to Optuna's samplers); other numeric options get SAMPLER_NUMBER.
SAMPLER_RULES = {
    "n_startup_trials": TRIAL_COUNT,
    "n_ei_candidates": check_int(1, MAX_SAMPLER_NUMBER),
    "popsize": check_int(1, MAX_SAMPLER_NUMBER),
    "inc_popsize": check_int(1, MAX_SAMPLER_NUMBER),
    "population_size": check_int(2, MAX_SAMPLER_NUMBER),
    "mutation_prob": PROBABILITY,
    "crossover_prob": PROBABILITY,
    "swapping_prob": PROBABILITY,
    "prior_weight": check_float(0.0, lo_open=True, limit=MAX_SAMPLER_NUMBER),
    "sigma0": check_float(0.0, lo_open=True, limit=MAX_SAMPLER_NUMBER),
}
SAMPLER_NUMBER = check_float(0.0, limit=MAX_SAMPLER_NUMBER)


def parse_sampler(source: str, method: str, raw: Any, conditional: bool = False) -> dict[str, Any]:
    """``sampler:`` options, passed to the method's Optuna sampler as keyword arguments (e.g.
    ``n_startup_trials: 5`` for tpe). Checked by building the sampler once here. A TPE sweep
    with conditional parameters (``conditional``) gets ``multivariate`` and ``group`` on unless
    it says otherwise: TPE then models the parameters that exist together, one group per set of
    parameters seen together, instead of each alone over the trials that happen to have it."""
    if raw is None and not (conditional and method == "tpe"):
        return {}
    options = dict(mapping(source, "sampler", raw))
    if conditional and method == "tpe":
        options.setdefault("multivariate", True)
        options.setdefault("group", options["multivariate"])  # group needs multivariate
    if method not in names.SAMPLERS:
        raise err(source, "sampler", f"method {method!r} uses no sampler (its points are queued)")
    import inspect

    import optuna

    cls = getattr(optuna.samplers, names.SAMPLERS[method])
    signature = inspect.signature(cls).parameters
    known = [k for k in signature if k != "seed"]
    options = dict(options)
    for key, value in list(options.items()):
        if key == "seed":
            raise err(source, "sampler.seed", "sweeper seeds the sampler from the sweep's 'seed'")
        if key == "constraints_func":
            raise err(source, "sampler.constraints_func", "give limits under the sweep's 'constraints:' instead")
        if key not in known:
            raise err(source, f"sampler.{key}", f"not an option of {cls.__name__} (options: {', '.join(known)})")
        if not isinstance(value, (bool, int, float, str)):
            raise err(source, f"sampler.{key}", f"{value!r} is not a single number, flag or name")
        options[key] = _sampler_value(source, key, value, str(signature[key].annotation))
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental-option warnings belong to the run
            cls(**options)
    except (TypeError, ValueError) as exc:
        raise err(source, "sampler", f"{cls.__name__} refuses these options ({str(exc).splitlines()[0]})") from None
    return options


def _sampler_value(source: str, key: str, value: Any, annotation: str) -> Any:
    """A sampler option by the rules of every section: flags true/false (or 1/0), numbers
    finite, not negative and bounded; names (strings) are left to the sampler."""
    path = f"sampler.{key}"
    if "bool" in annotation and "int" not in annotation and "float" not in annotation:
        return checked(source, path, check_bool, value)
    if isinstance(value, str) or (isinstance(value, bool) and key not in SAMPLER_RULES):
        return value
    if key in SAMPLER_RULES:
        return checked(source, path, SAMPLER_RULES[key], value)
    checked(source, path, SAMPLER_NUMBER, value)
    return value  # an int stays an int
