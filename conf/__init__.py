"""keras-moe's Hydra configs. In an installed wheel this folder is the package `keras_moe.conf` (with
`recipes/` inside it), which Hydra reads as `pkg://keras_moe.conf`; see setup.py."""
