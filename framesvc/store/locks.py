"""The one lock order of writes under a task: the task's row first.

Every transaction that changes what hangs under a task - its labels, jobs, segments and
annotations, or the task itself when it is deleted - starts with :func:`lock_task`, so
concurrent writes to one task run one after the other and all take their locks in the
same order.

* On SQLite the statement takes the database's write lock before anything is read
  (SQLAlchemy's pysqlite dialect begins the transaction at the first write), so what
  the transaction then reads cannot change under it.
* On PostgreSQL it locks the task's row (CVAT's ``select_for_update``).  Reads after it
  see every write committed before it (READ COMMITTED).  Without one order PostgreSQL
  deadlocks: a label deletion locks the label row and then wants the task's row, while
  an annotation write holds the task's row and waits for the label row that its new
  shape references - one of them fails with "deadlock detected".

An ``UPDATE`` rather than ``SELECT ... FOR UPDATE`` because only a write takes SQLite's
lock; it is the same statement on both backends.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from framesvc.store.db import utcnow
from framesvc.store.schema import tasks


async def lock_task(conn: AsyncConnection, task_id: int, *, touch: bool = False) -> bool:
    """Lock the task for the rest of the transaction; False if there is no such task.

    ``touch`` also moves the task's ``updated_date`` to now; otherwise the row is
    rewritten unchanged.
    """
    value = utcnow() if touch else tasks.c.updated_date
    result = await conn.execute(
        tasks.update().where(tasks.c.id == task_id).values(updated_date=value)
    )
    return result.rowcount > 0
