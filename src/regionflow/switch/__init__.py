"""Region switch: plans (YAML), their steps, the executor that runs them in the activating region, and
reconcile."""
