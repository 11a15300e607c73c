"""The small shared base of videoqa and the SeR captioner package: errors, config loading,
device/dtype resolution, JSON-lines files, out-of-memory batch halving. Depends on no package of ours."""
