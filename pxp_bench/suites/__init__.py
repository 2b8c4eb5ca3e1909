"""Suites: standardized matrices of runs (`definition`), each cell in a process of its own (`cells`),
run resumably (`runner`) by an executor plugin (`local`, `slurm`)."""
