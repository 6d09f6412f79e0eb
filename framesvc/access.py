"""Who may see and change which task and job: the visibility basis of every handler.

The rules follow CVAT's sandbox policies (``cvat/apps/engine/rules/tasks.rego`` and
``jobs.rego``; framesvc has no organizations or projects, so only these remain):

* a superuser sees and may do everything;
* a **task** is visible to its owner and its assignee ("task staff") - *not* to the
  assignee of one of its jobs: CVAT's task list filter does not include job assignees,
  which is why ``JobRead.task_name`` can be null.  Its data, meta, preview and
  annotations follow the task;
* a **job** is visible to its own assignee and to the staff of its task, and so are its
  data, meta, preview, labels and annotations;
* changing a task's name, labels, bug tracker, subset, data, meta or annotations
  ("write") is for task staff; changing its owner or assignee and deleting it
  ("manage") is for the owner only;
* changing a job's state, meta or annotations ("write") is for anyone who sees the job;
  changing its stage ("manage") is for task staff;
* reassigning a job, and creating or deleting a ground-truth job ("owner"), is for the
  task's owner only.  CVAT lets the task's assignee do these too; framesvc's issue 4
  reserves them to the owner (and superusers).

Handlers ask through :func:`get_task_for` / :func:`get_job_for`, which answer 404 for
what the caller may not see (so ids of other people's tasks do not leak) and 403 for
what the caller sees but may not change.  Lists filter with :func:`visible_tasks` /
:func:`visible_jobs`, plain WHERE clauses that need no join.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from framesvc.http.errors import forbidden, not_found
from framesvc.store.schema import jobs, tasks
from framesvc.store.users import User

#: Ids are 64-bit; a larger number in a URL cannot name a row (and would make the
#: database driver raise), so it is simply not found.
MAX_ID = 2**63 - 1


def _task_staff(user: User) -> sa.ColumnElement[bool]:
    return sa.or_(tasks.c.owner_id == user.id, tasks.c.assignee_id == user.id)


def visible_tasks(user: User) -> sa.ColumnElement[bool]:
    """WHERE clause over ``schema.tasks`` selecting the tasks ``user`` may see."""
    if user.is_superuser:
        return sa.true()
    return _task_staff(user)


def visible_jobs(user: User) -> sa.ColumnElement[bool]:
    """WHERE clause over ``schema.jobs`` selecting the jobs ``user`` may see.

    Written as a subquery on ``tasks`` so callers need no join of their own.
    """
    if user.is_superuser:
        return sa.true()
    staff_tasks = sa.select(tasks.c.id).where(_task_staff(user))
    return sa.or_(jobs.c.assignee_id == user.id, jobs.c.task_id.in_(staff_tasks))


# Predicates over already loaded rows (anything with the columns as attributes).


def is_task_staff(user: User, task: Any) -> bool:
    return user.is_superuser or user.id in (task.owner_id, task.assignee_id)


def can_view_task(user: User, task: Any) -> bool:
    return is_task_staff(user, task)


def can_write_task(user: User, task: Any) -> bool:
    return is_task_staff(user, task)


def can_manage_task(user: User, task: Any) -> bool:
    return user.is_superuser or task.owner_id == user.id


def can_view_job(user: User, job: Any, task: Any) -> bool:
    return is_task_staff(user, task) or job.assignee_id == user.id


def can_manage_job(user: User, task: Any) -> bool:
    """Stage changes: task staff."""
    return is_task_staff(user, task)


def can_own_job(user: User, task: Any) -> bool:
    """Reassignment, ground-truth creation and deletion: the task's owner."""
    return can_manage_task(user, task)


async def get_task_for(
    conn: AsyncConnection,
    user: User,
    task_id: int,
    *,
    write: bool = False,
    manage: bool = False,
) -> sa.Row[Any]:
    """The ``tasks`` row of ``task_id`` if ``user`` may see it (and write/manage it).

    404 ``{"detail": "Not found."}`` if it does not exist or is invisible to ``user``;
    403 if visible but ``write`` (task staff) or ``manage`` (owner) is not allowed.
    """
    if not 0 < task_id <= MAX_ID:
        raise not_found()
    row = (await conn.execute(sa.select(tasks).where(tasks.c.id == task_id))).first()
    if row is None or not can_view_task(user, row):
        raise not_found()
    if write and not can_write_task(user, row):
        raise forbidden()
    if manage and not can_manage_task(user, row):
        raise forbidden()
    return row


class _TaskStaff(NamedTuple):
    owner_id: int | None
    assignee_id: int | None


async def get_job_for(
    conn: AsyncConnection,
    user: User,
    job_id: int,
    *,
    write: bool = False,
    manage: bool = False,
    owner: bool = False,
) -> sa.Row[Any]:
    """The ``jobs`` row of ``job_id`` if ``user`` may see it (and write/manage/own it).

    404 if it does not exist or is invisible to ``user``.  ``write`` (state,
    annotations, meta) is allowed to whoever sees the job; ``manage`` (stage) needs
    task staff and ``owner`` (assignee, ground-truth deletion) the task's owner, else
    403.
    """
    if not 0 < job_id <= MAX_ID:
        raise not_found()
    # One round trip for the job and its task's staff: every job endpoint (media above
    # all) starts here, and each query through the async driver costs ~0.4 ms.
    row = (
        await conn.execute(
            sa.select(jobs, tasks.c.owner_id.label("task_owner_id"),
                      tasks.c.assignee_id.label("task_assignee_id"))
            .join(tasks, tasks.c.id == jobs.c.task_id)
            .where(jobs.c.id == job_id)
        )
    ).first()
    if row is None:
        raise not_found()
    task = _TaskStaff(row.task_owner_id, row.task_assignee_id)
    if not can_view_job(user, row, task):
        raise not_found()
    if manage and not can_manage_job(user, task):
        raise forbidden()
    if owner and not can_own_job(user, task):
        raise forbidden()
    return row
