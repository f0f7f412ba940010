"""The notebook API as a user meets it: a real notebook run through a Jupyter kernel (nbclient)
runs a sweep, shows its results as a DataFrame, its best trial and the inline parallel plot,
then grows it with resume(trials=...)."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

CELLS = [
    "import sweeper\n"
    "s = sweeper.run({'name': 'nb', 'data': {'dataset': 'digits', 'limit': 200}, 'model': 'mlp',\n"
    "                 'method': 'random', 'trials': 3, 'seed': 3,\n"
    "                 'params': {'optimizer__learning_rate': {'low': 0.003, 'high': 0.03, 'log': True}},\n"
    "                 'training': {'epochs': 1, 'batch_size': 32, 'model__units': 8}},\n"
    "                storage=STORE)",
    "df = s.results(); print(type(df).__name__, df.shape[0], sorted(c for c in df.columns if c.startswith('param_')))",
    "print(s.best()['number'] in df.index, round(s.best()['value'], 4) == round(df['mean_test_score'].max(), 4))",
    "s",
    "t = sweeper.resume('nb', STORE, trials=4, report=False); print(len(t.results()))",
    "print(sweeper.load('nb', STORE).progress().finished)",
]


def test_a_notebook_runs_a_sweep_and_shows_it(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    store = f"sqlite:///{tmp_path / 'nb.db'}"
    nb.cells = [nbformat.v4.new_code_cell(f"STORE = {store!r}")] + [nbformat.v4.new_code_cell(c) for c in CELLS]
    # ipykernel's python3 kernel runs this interpreter, so the kernel sees the installed sweeper.
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    out = [cell.get("outputs", []) for cell in nb.cells]

    def text(i: int) -> str:
        return "".join(o.get("text", "") for o in out[i] if o.get("output_type") == "stream" and o.get("name") == "stdout")

    assert text(2).strip() == "DataFrame 3 ['param_optimizer__learning_rate']"
    assert text(3).strip() == "True True"
    html = next(o["data"]["text/html"] for o in out[4] if o.get("output_type") == "execute_result")
    assert "<b>nb</b>: 3/3 finished" in html and "hiplot" in html.lower()
    assert text(5).strip() == "4" and text(6).strip() == "4"
    assert (tmp_path / "reports" / "nb" / "index.html").exists()  # run() wrote the report
