"""The run store floor: every run's files (``runs``), the table of all runs (``table``), trained models rebuilt
from the store (``models``) and what makes a result traceable (``provenance``). Imports the library only."""
from .models import load_model
from .runs import (ADAPTER_FILE, MODEL_FILE, PREDICTIONS_FILE, STATUSES, load_config, load_metrics, load_predictions,
                   load_steps, read_result, run_path, run_status, store_root, write_json, write_jsonl,
                   write_predictions)
from .table import RESULT_COLUMNS, format_table, load_results, result_row

__all__ = [
    "ADAPTER_FILE", "MODEL_FILE", "PREDICTIONS_FILE", "RESULT_COLUMNS", "STATUSES", "format_table", "load_config",
    "load_metrics", "load_model", "load_predictions", "load_results", "load_steps", "read_result", "result_row",
    "run_path", "run_status", "store_root", "write_json", "write_jsonl", "write_predictions",
]
