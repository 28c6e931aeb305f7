"""The paper floor: the run grids of each profile (``experiments``), tables, verdicts, plots, theory, the failure
analysis, the explorer widget and the notebook suite. Pure functions of the run store's table, plus the suite that
trains what is missing and executes the notebooks. Imports every floor below it; nothing imports it but the CLI.
Its dependencies (seaborn, papermill, nbconvert, ipywidgets, JupyterLab) are the ``paper`` extra."""
