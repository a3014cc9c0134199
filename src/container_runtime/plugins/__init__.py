"""The built-in network plugins: their manifests (`*.toml`, found by network/plugins.py)
and, one folder each, their drivers built on the plugin SDK (container_runtime.plugin)."""
