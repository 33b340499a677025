"""Running experiments: the active-learning loop, sweeps over policies x seeds x grids (local or Ray), run
folders (runs: folder, writes, lock, writer, reader), the dataset snapshot, presets and ablations, the
prompt-space projection computed for the dashboard, and the helpers that end workers with their driver
(parent_death, ray_watchdog).
"""
