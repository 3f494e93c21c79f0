"""Schemathesis hooks for scripts/schemathesis.sh (see scripts/schemathesis.toml).

Four things the OpenAPI document cannot say in a schema, and says in words:

- `from` and `to` of a range are related: `to` not before `from`, less than
  366 days after it. Generated pairs are put in order (to = from) when they
  are not, so a valid pair is what a valid request carries.
- A `/v1` read with `min_seq` past the projections answers 503 with
  Retry-After (documented), which the not_a_server_error check counts as a
  failure all the same. Exactly that answer is dropped: the 503's code is
  not_ready, it names the seq the request asked for, that seq is past where
  the projections are, and Retry-After is set. Every other failure stays.
- The log's proofs relate their sizes: seq from 1 to tree_size, from not
  past to. Generated values are put in order when they are not.
- A proof's size past the newest checkpoint is a 400 (documented; the
  newest size is not in the static document), which positive_data_acceptance
  counts as a failure all the same. Exactly that answer is dropped: code
  beyond_checkpoint, naming the size the request asked for, past the newest
  checkpoint's.
"""

import re
from datetime import datetime, timedelta, timezone

import schemathesis

# Less than the server's 366 days, with room for any zone's offset.
LONGEST_RANGE = timedelta(days=360)
ZONE_MARGIN = timedelta(days=2)

NOT_REACHED = re.compile(
    r"the projections have not reached seq (\d+) yet \(they are at (\d+)\); retry later"
)


def instant(text):
    """A date (its midnight, UTC) or an RFC 3339 time; None otherwise."""
    if not isinstance(text, str):
        return None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
        t = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else None


@schemathesis.hook
def before_call(context, case, kwargs):
    """Before every request of every phase (map_query misses the coverage
    phase's): a backwards or over-long range that is otherwise well formed
    becomes the one day or instant `from` names."""
    query = case.query
    if query:
        order_proof_sizes(case.path, query)
    if not query or "from" not in query or "to" not in query:
        return
    if case.path.endswith("/v1/log/proof/consistency"):
        return
    start, end = instant(query["from"]), instant(query["to"])
    if start is None or end is None:
        return
    if end < start + ZONE_MARGIN or end - start > LONGEST_RANGE:
        query["to"] = query["from"]


BEYOND = re.compile(r"tree size (\d+) is past the newest checkpoint \((\d+|none yet)\)")


def count(value):
    """A generated count: an int, or its decimal text (the coverage phase
    sends text); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"[0-9]+", value):
        return int(value)
    return None


def order_proof_sizes(path, query):
    """seq in 1..=tree_size for an inclusion proof, from <= to for a
    consistency proof, when the generated values are counts (each kept
    in the type it was generated as)."""
    def put(name, n):
        query[name] = str(n) if isinstance(query[name], str) else n

    if path.endswith("/v1/log/proof/inclusion"):
        seq, size = count(query.get("seq")), count(query.get("tree_size"))
        if seq is not None and size is not None:
            put("tree_size", max(size, 1))
            put("seq", min(max(seq, 1), max(size, 1)))
    if path.endswith("/v1/log/proof/consistency"):
        start, end = count(query.get("from")), count(query.get("to"))
        if start is not None and end is not None:
            put("from", min(start, end))


def header(response, name):
    values = response.headers.get(name.lower()) or []
    return values[0] if values else None


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """False (dropped) only for the documented 503 of a min_seq not reached
    and the documented 400 of a size past the newest checkpoint."""
    if beyond_checkpoint(case, response):
        return False
    if failure.code != "ST101" or response is None or response.status_code != 503:
        return True
    if header(response, "Retry-After") is None:
        return True
    asked = (case.query or {}).get("min_seq")
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return True
    found = NOT_REACHED.fullmatch(error.get("message", ""))
    if error.get("code") != "not_ready" or found is None or asked is None:
        return True
    refused, position = int(found.group(1)), int(found.group(2))
    return not (int(asked) == refused and refused > position)


def beyond_checkpoint(case, response):
    """The 400 for a tree size past the newest checkpoint, for the size the
    request asked for (tree_size or to)."""
    if response is None or response.status_code != 400:
        return False
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    found = BEYOND.fullmatch(error.get("message", ""))
    if error.get("code") != "beyond_checkpoint" or found is None:
        return False
    query = case.query or {}
    asked = query.get("tree_size", query.get("to"))
    try:
        asked = int(asked)
    except (TypeError, ValueError):
        return False
    newest = found.group(2)
    return int(found.group(1)) == asked and (newest == "none yet" or asked > int(newest))
