"""Tools for the course's maintainers, apart from what learners import.

- ``python -m course_lib.maintainer.corpus``: build the corpus in ``data/`` and its manifest;
- ``python -m course_lib.maintainer.docs``: draw the course-map figure and write the further-reading page;
- ``python -m course_lib.maintainer.learner``: write the learner editions (``--check``: are they current?).
"""
