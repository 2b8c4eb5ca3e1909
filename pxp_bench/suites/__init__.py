"""Suites: standardized matrices of runs. A suite file is found and read (`files`: search folders,
``extends``), its fields validated (`fields`: run options, seeds, settings, methods) and expanded into
cells (`definition`: `Suite`, `Cell` and their keys, optimised variants' parameters and provenance); each
cell runs in a process of its own (`cells`), resumably (`runner`), by an executor plugin (`local`,
`slurm`; registered by `builtin`)."""
