"""The one module that knows HiPlot (archived upstream): rows -> a self-contained HTML page.

Replace this module to swap the plotting library; the rest of the report passes plain rows.
"""

from __future__ import annotations

from typing import Any, Sequence

# The bundle's CSS @imports a web font; drop it so the page makes no network request offline.
_WEB_FONT = '@import\\"https://fonts.googleapis.com/css?family=Lato:400,700,400italic&display=swap\\"'


def parallel_plot_html(
    rows: Sequence[dict[str, Any]],
    order: Sequence[str],
    color_by: str,
    log_columns: Sequence[str] = (),
    hidden: Sequence[str] = (),
) -> str:
    """A full HTML document: HiPlot parallel plot (columns in ``order``, left to right),
    lines coloured by ``color_by``, and HiPlot's table below."""
    import hiplot as hip

    exp = hip.Experiment.from_iterable(rows)
    for col in log_columns:
        if col in exp.parameters_definition or any(col in r for r in rows):
            exp.parameters_definition[col].type = hip.ValueType.NUMERIC_LOG
    exp.colorby = color_by
    exp.display_data(hip.Displays.PARALLEL_PLOT).update({"order": list(order), "hide": list(hidden)})
    exp.display_data(hip.Displays.TABLE).update({"hide": ["uid", "from_uid"]})
    exp.enabled_displays = [hip.Displays.PARALLEL_PLOT, hip.Displays.TABLE]
    return exp.to_html().replace(_WEB_FONT, "")
