"""Property tests: the JSON-Logic ``filter`` translated to SQL selects exactly the rows a
reference evaluation in Python selects.

Random users, data, tasks and jobs are written into a real database with framesvc's
schema (SQLite, or PostgreSQL under ``make test-postgres``); random rules over the jobs'
(and tasks') list fields are translated by ``store/filters.py`` through the very
``JOB_FIELDS``/``TASK_FIELDS`` the HTTP lists use, run by the database, and compared
with :func:`evaluate`, an independent evaluator of CVAT's
JSON-Logic semantics written here over plain Python values:

* ``{"var": f}`` is "f is set" (not null);
* a comparison with a null field is false (and its negation true), ``== null`` is
  "is null";
* ``in`` with a list is membership (null never matches), ``in`` with a text is a
  case-insensitive substring test;
* three-argument ``<=`` is an inclusive between.

Every other input must be a 400 (``ListQueryError``), never another exception.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framesvc.store.filters import ListQueryError, json_logic_where
from framesvc.store.jobs import JOB_FIELDS
from framesvc.store.schema import data, jobs, metadata, segments, tasks, users
from framesvc.store.tasks import TASK_FIELDS

BASE = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC)
# Names mix cases and LIKE's wildcards, so substring tests exercise escaping and folding.
TEXT = st.text(alphabet="abAB_%x 1", min_size=0, max_size=5)
MEDIA = ("image", "video", "point_cloud", "audio")


@dataclass
class World:
    """The rows written to the database, and each listed object's field values."""

    job_values: dict[int, dict[str, Any]]
    task_values: dict[int, dict[str, Any]]
    #: Sample values per field, so that random rules often hit real rows.
    samples: dict[str, list[Any]]


@st.composite
def worlds(draw: st.DrawFn) -> tuple[World, dict[str, list[dict[str, Any]]]]:
    n_users = draw(st.integers(1, 4))
    user_rows = [
        {"id": i + 1, "username": f"u{i}{draw(TEXT)}", "password_hash": "x",
         "date_joined": BASE}
        for i in range(n_users)
    ]
    user_names = {u["id"]: u["username"] for u in user_rows}
    maybe_user = st.one_of(st.none(), st.sampled_from(sorted(user_names)))
    dates = st.integers(0, 5).map(lambda m: BASE + dt.timedelta(minutes=m, microseconds=m * 7))

    n_tasks = draw(st.integers(1, 4))
    data_rows, task_rows, segment_rows, job_rows = [], [], [], []
    job_values: dict[int, dict[str, Any]] = {}
    task_values: dict[int, dict[str, Any]] = {}
    job_id = 0
    for t in range(1, n_tasks + 1):
        media = draw(st.one_of(st.none(), st.sampled_from(MEDIA)))
        if media is not None:
            data_rows.append({
                "id": t, "chunk_size": 10, "size": 10, "image_quality": 70,
                "compressed_chunk_type": "imageset", "original_chunk_type": "imageset",
                "sorting_method": "natural", "media_type": media, "root": "/x",
                "deleted_frames": [], "created_date": BASE,
            })
        task = {
            "id": t, "name": draw(TEXT), "owner_id": draw(maybe_user),
            "assignee_id": draw(maybe_user), "project_id": draw(st.one_of(st.none(),
                                                                           st.integers(1, 3))),
            "bug_tracker": draw(TEXT), "subset": draw(TEXT),
            "status": draw(st.sampled_from(("annotation", "validation", "completed"))),
            "mode": draw(st.sampled_from(("", "annotation", "interpolation"))),
            "dimension": draw(st.sampled_from(("2d", "3d"))),
            "data_id": t if media is not None else None,
            "created_date": draw(dates), "updated_date": draw(dates),
        }
        task_rows.append(task)
        segment_rows.append({"id": t, "task_id": t, "start_frame": 0, "stop_frame": 9,
                             "chunks_updated_date": BASE})
        public_media = None if media is None else (
            media if media in ("point_cloud", "audio") else "image")
        task_jobs = []
        for _ in range(draw(st.integers(0, 4))):
            job_id += 1
            parent = draw(st.one_of(st.none(), st.sampled_from(task_jobs))) if task_jobs \
                else None
            job = {
                "id": job_id, "segment_id": t, "task_id": t,
                "type": draw(st.sampled_from(("annotation", "ground_truth",
                                              "consensus_replica"))),
                "parent_job_id": parent, "assignee_id": draw(maybe_user),
                "stage": draw(st.sampled_from(("annotation", "validation", "acceptance"))),
                "state": draw(st.sampled_from(("new", "in progress", "completed",
                                               "rejected"))),
                "created_date": BASE, "updated_date": draw(dates),
            }
            task_jobs.append(job_id)
            job_rows.append(job)
            job_values[job_id] = {
                "id": job_id, "task_id": t, "project_id": task["project_id"],
                "task_name": task["name"], "project_name": None,
                "assignee": user_names.get(job["assignee_id"]), "state": job["state"],
                "stage": job["stage"], "type": job["type"], "parent_job_id": parent,
                "updated_date": job["updated_date"], "dimension": task["dimension"],
                "mode": task["mode"], "media_type": public_media,
            }
        task_values[t] = {
            "id": t, "name": task["name"], "owner": user_names.get(task["owner_id"]),
            "assignee": user_names.get(task["assignee_id"]), "status": task["status"],
            "mode": task["mode"], "dimension": task["dimension"], "subset": task["subset"],
            "project_id": task["project_id"], "project_name": None,
            "tracker_link": task["bug_tracker"], "updated_date": task["updated_date"],
            "created_date": task["created_date"], "media_type": public_media,
            "validation_mode": "gt" if any(
                j["type"] == "ground_truth" for j in job_rows if j["task_id"] == t) else None,
        }
    samples: dict[str, list[Any]] = {}
    for values in (*job_values.values(), *task_values.values()):
        for key, value in values.items():
            samples.setdefault(key, []).append(value)
    rows = {"users": user_rows, "data": data_rows, "tasks": task_rows,
            "segments": segment_rows, "jobs": job_rows}
    return World(job_values, task_values, samples), rows


# Rules ------------------------------------------------------------------------------------

INT_FIELDS = {"id", "task_id", "project_id", "parent_job_id"}
DATE_FIELDS = {"updated_date", "created_date"}


def render(name: str, value: Any, draw: st.DrawFn) -> Any:
    """A JSON operand for ``value``; dates as ISO text in a random time zone."""
    if isinstance(value, dt.datetime):
        offset = dt.timedelta(hours=draw(st.sampled_from((0, 2, -5))))
        local = value.astimezone(dt.timezone(offset))
        text = local.isoformat()
        return text.replace("+00:00", "Z") if offset == dt.timedelta(0) else text
    return value


@st.composite
def operands(draw: st.DrawFn, name: str, world: World) -> Any:
    """A value for comparisons with ``name``: often a real one, sometimes a near miss."""
    real = [v for v in world.samples.get(name, []) if v is not None]
    if name in INT_FIELDS:
        fresh = st.integers(-2, 12)
    elif name in DATE_FIELDS:
        fresh = st.integers(-1, 7).map(lambda m: BASE + dt.timedelta(minutes=m))
    else:
        fresh = TEXT
    value = draw(st.sampled_from(real) if real and draw(st.booleans()) else fresh)
    return render(name, value, draw)


def rules(world: World, fields: list[str]) -> st.SearchStrategy[Any]:
    @st.composite
    def leaf(draw: st.DrawFn) -> Any:
        name = draw(st.sampled_from(fields))
        var = {"var": name}
        kind = draw(st.sampled_from(("var", "cmp", "mirror", "between", "in", "contains",
                                     "isnull")))
        if kind == "var":
            return var
        if kind == "isnull":
            return {"==": [var, None]}
        if kind in ("cmp", "mirror"):
            op = draw(st.sampled_from(("==", "<", "<=", ">", ">=")))
            value = draw(operands(name, world))
            return {op: [var, value] if kind == "cmp" else [value, var]}
        if kind == "between":
            return {"<=": [draw(operands(name, world)), var, draw(operands(name, world))]}
        if kind == "in":
            return {"in": [var, draw(st.lists(operands(name, world), max_size=3))]}
        if name in DATE_FIELDS:
            return var
        needle = draw(operands(name, world))
        text = str(needle)
        if text and draw(st.booleans()):
            start = draw(st.integers(0, len(text) - 1))
            text = text[start:start + draw(st.integers(1, 3))]
        return {"in": [text.swapcase() if draw(st.booleans()) else text, var]}

    return st.recursive(
        leaf(),
        lambda children: st.one_of(
            st.lists(children, min_size=1, max_size=3).map(lambda xs: {"and": xs}),
            st.lists(children, min_size=1, max_size=3).map(lambda xs: {"or": xs}),
            children.map(lambda x: {"!": x}),
            children.map(lambda x: {"!!": [x]}),
        ),
        max_leaves=6,
    )


# Reference evaluation ---------------------------------------------------------------------


def _convert(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in INT_FIELDS:
        return int(value)
    if name in DATE_FIELDS:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.UTC)
    return str(value)


def evaluate(rule: Any, row: dict[str, Any]) -> bool:
    """CVAT's JSON-Logic semantics over one object's field values."""
    (op, args), = rule.items()
    if op == "and":
        return all(evaluate(a, row) for a in args)
    if op == "or":
        return any(evaluate(a, row) for a in args)
    if op in ("!", "!!"):
        inner = args[0] if isinstance(args, list) else args
        return not evaluate(inner, row) if op == "!" else evaluate(inner, row)
    if op == "var":
        return row[args] is not None
    if op == "in":
        if isinstance(args[0], dict):
            name = args[0]["var"]
            wanted = [_convert(name, v) for v in args[1]]
            return row[name] is not None and row[name] in [w for w in wanted if w is not None]
        name = args[1]["var"]
        return row[name] is not None and str(args[0]).lower() in str(row[name]).lower()
    if len(args) == 3:
        name = args[1]["var"]
        low, high = _convert(name, args[0]), _convert(name, args[2])
        return row[name] is not None and low <= row[name] <= high
    if isinstance(args[0], dict):
        name, value = args[0]["var"], args[1]
    else:
        mirror = {"==": "==", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
        name, value, op = args[1]["var"], args[0], mirror[op]
    field, target = row[name], _convert(name, value)
    if target is None:
        return field is None
    if field is None:
        return False
    return {
        "==": field == target, "<": field < target, "<=": field <= target,
        ">": field > target, ">=": field >= target,
    }[op]


# Database ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sa.Engine]:
    from conftest import database_url_for, sync_engine

    root = tmp_path_factory.mktemp("filters")
    (root / "data").mkdir()
    # SQLite by default; the test cluster's PostgreSQL under make test-postgres.
    eng = sync_engine(database_url_for(root))
    metadata.create_all(eng)
    yield eng
    eng.dispose()


def load(engine: sa.Engine, rows: dict[str, list[dict[str, Any]]]) -> None:
    with engine.begin() as conn:
        for table in (jobs, segments, tasks, data, users):
            conn.execute(table.delete())
        for table in (users, data, tasks, segments, jobs):
            if rows[table.name]:
                conn.execute(table.insert(), rows[table.name])


def selected(engine: sa.Engine, table: sa.Table, fields: Any, rule: Any) -> set[int]:
    where = json_logic_where(fields.filterable, json.dumps(rule))
    with engine.connect() as conn:
        return {r[0] for r in conn.execute(sa.select(table.c.id).where(where))}


PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

JOB_FILTER_FIELDS = sorted(JOB_FIELDS.filterable)
TASK_FILTER_FIELDS = sorted(TASK_FIELDS.filterable)


@PROPERTY
@given(st.data())
def test_job_filters_match_the_reference(engine: sa.Engine, data_: st.DataObject) -> None:
    world, rows = data_.draw(worlds())
    load(engine, rows)
    rule = data_.draw(rules(world, JOB_FILTER_FIELDS))
    expected = {i for i, values in world.job_values.items() if evaluate(rule, values)}
    assert selected(engine, jobs, JOB_FIELDS, rule) == expected, rule


@PROPERTY
@given(st.data())
def test_task_filters_match_the_reference(engine: sa.Engine, data_: st.DataObject) -> None:
    world, rows = data_.draw(worlds())
    load(engine, rows)
    rule = data_.draw(rules(world, TASK_FILTER_FIELDS))
    expected = {i for i, values in world.task_values.items() if evaluate(rule, values)}
    assert selected(engine, tasks, TASK_FIELDS, rule) == expected, rule


@settings(max_examples=5, deadline=None)
@given(worlds())
def test_the_reference_covers_every_list_field(
    world_rows: tuple[World, dict[str, list[dict[str, Any]]]],
) -> None:
    """The reference knows exactly the filterable fields (no field goes untested)."""
    world, _ = world_rows
    assert set(next(iter(world.task_values.values()))) == set(TASK_FILTER_FIELDS)
    for values in world.job_values.values():
        assert set(values) == set(JOB_FILTER_FIELDS)


JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 2**70), st.floats(),
              st.text(max_size=4), st.sampled_from(["id", "var", "in", "!", "and"])),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(["var", "and", "or", "!", "!!", "==", "<", "<=",
                                         "in", ">", "!=", "x"]), children, max_size=2),
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rule=JSON)
def test_any_input_is_a_clause_or_a_400(engine: sa.Engine, rule: Any) -> None:
    """Garbage in: either a WHERE clause SQLite runs, or a CVAT-shaped 400 - never a 500."""
    try:
        where = json_logic_where(JOB_FIELDS.filterable, json.dumps(rule))
    except ListQueryError as exc:
        assert isinstance(exc.body, list) and exc.body[0].startswith("filter")
        return
    with engine.connect() as conn:
        conn.execute(sa.select(jobs.c.id).where(where)).all()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "filter shouldn't be empty"),
        ("{}", "filter shouldn't be empty"),
        ('{"==":[{"var":"nope"},1]}', "filter: term 'nope' is not supported"),
        ('{"!=":[{"var":"id"},1]}',
         'filter: != operation with [{"var": "id"}, 1] arguments is not implemented'),
        ('{"<":[{"var":"id"},null]}', "filter: 'id' cannot be compared with null by '<'"),
        ('{"==":[{"var":"id"},"abc"]}', "filter: \"abc\" is not a valid value for 'id'"),
        ('{"==":[{"var":"id"},1e30]}', "filter: 1e+30 is not a valid value for 'id'"),
        ('{"and":[]}', "filter: 'and' needs a non-empty list of rules"),
        ('{"in":[{"var":"id"},5]}', "filter: 'in' needs a list of values for 'id'"),
        ('{"in":["x",{"var":"updated_date"}]}',
         "filter: 'updated_date' does not support substring search"),
        ('{"!":' * 40 + '{"var":"id"}' + "}" * 40,
         "filter: the expression is nested deeper than 32 levels"),
    ],
)
def test_bad_filters_are_400_with_a_message(raw: str, message: str) -> None:
    with pytest.raises(ListQueryError) as info:
        json_logic_where(JOB_FIELDS.filterable, raw)
    assert info.value.body == [message]


def test_bad_json_names_the_parse_error() -> None:
    with pytest.raises(ListQueryError) as info:
        json_logic_where(JOB_FIELDS.filterable, "{oops")
    assert info.value.body[0].startswith("filter: can't parse filter expression: ")
