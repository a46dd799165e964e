"""Entry point of one region process: `python -m regionflow.region.server --config FILE --region NAME`."""

from __future__ import annotations

import argparse
import sys

import uvicorn

from regionflow.config import load_config
from regionflow.errors import RegionflowError
from regionflow.region.gateway import create_app
from regionflow.region.logs import configure
from regionflow.region.runtime import Region


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="regionflow-region")
    parser.add_argument("--config", required=True)
    parser.add_argument("--region", required=True)
    args = parser.parse_args(argv)
    holder: dict[str, Region] = {}
    configure(args.region, lambda: holder["region"].control.get().epoch if "region" in holder else None)
    try:
        config = load_config(args.config)
        rc = config.region(args.region)
        cert, key = rc.server_tls()  # before anything starts: a bad certificate is one line, not a traceback
        region = Region(config, args.region)
        holder["region"] = region
    except RegionflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    region.start()
    try:
        uvicorn.run(create_app(region), host=rc.host, port=rc.port, log_level="warning", access_log=False,
                    ssl_certfile=cert, ssl_keyfile=key)
    finally:
        region.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
