"""Region switch: plans (YAML), the step registry and generic steps, and the runner that executes a plan
in the region it activates. It knows no workload and no region internals: it is typed against the
SwitchContext Protocol (context.py) that a region implements."""
