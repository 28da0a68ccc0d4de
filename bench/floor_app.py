"""The hardware floor for bench/serve_floor.py: a bare Flask endpoint that does only what exact scoring
needs. POST /rec {"customer": {"customer_id": ...}} parses the JSON body, computes
`argpartition(item_factors @ customer_vector)` over the served model's memory-mapped factors and
returns ten item ids. No validation, state, reasons or availability: what recsvc adds on top of this
is what the benchmark measures.

Env: FLOOR_MODEL_DIR, a model folder (recsvc's artifact). Run under the same gunicorn settings as the
service (2 sync workers, one BLAS thread each).
"""

import os

import numpy as np
from flask import Flask, jsonify, request

MD = os.environ["FLOOR_MODEL_DIR"]


def _load(name: str) -> np.ndarray:
    return np.load(os.path.join(MD, name + ".npy"), mmap_mode="r", allow_pickle=False)


ITEM_FACTORS = _load("item_factors")
CUSTOMER_FACTORS = _load("customer_factors")
ITEMS = [str(i) for i in _load("item_ids")]
ROW = {str(c): k for k, c in enumerate(_load("customer_ids"))}
app = Flask(__name__)


@app.post("/rec")
def rec():
    body = request.get_json(force=True)
    cid = str(((body or {}).get("customer") or {}).get("customer_id", ""))
    u = CUSTOMER_FACTORS[ROW.get(cid, 0)]
    s = ITEM_FACTORS @ u
    top = np.argpartition(-s, 10)[:10]
    top = top[np.argsort(-s[top])]
    return jsonify({"items": [ITEMS[int(j)] for j in top]})


@app.get("/readyz")
def readyz():
    return {"ready": True, "items": len(ITEMS)}
