"""Annotations of jobs and tasks: the data model, input parsing, validation and merging.

Everything here is pure (no I/O): ``model`` holds the objects of CVAT's LabeledData
(tags, shapes with skeleton elements, tracks with tracked shapes and elements) and
renders them as CVAT does; ``parse`` turns request JSON into them with DRF's field
semantics and messages; ``validate`` checks them against a job's labels and frames;
``tracks`` normalises and slices tracks; ``merge`` builds a task's view from its jobs
and distributes task-level writes to them.  ``store/annotations.py`` keeps the objects
in the database, ``http/annotations.py`` serves them.
"""
