"""The baseline: a naive sequential follower, SDK place straight from the stream callback.

    python -m bench.baseline WS_URL REST_URL LEADER_ID:TOKEN FOLLOWER_ID:TOKEN... [--seconds S]
"""

import argparse
import json
import time

from dhanhq import DhanContext, dhanhq
from websockets.sync.client import connect

SEGMENTS = {("NSE", "E"): "NSE_EQ", ("BSE", "E"): "BSE_EQ", ("NSE", "D"): "NSE_FNO",
            ("BSE", "D"): "BSE_FNO", ("MCX", "M"): "MCX_COMM"}
PRODUCTS = {"C": "CNC", "I": "INTRADAY", "M": "MARGIN", "F": "MTF"}
TYPES = {"LMT": "LIMIT", "MKT": "MARKET", "SL": "STOP_LOSS", "SLM": "STOP_LOSS_MARKET"}
ACCEPTED = {"Pending", "Part_Traded", "Traded"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("ws_url"), parser.add_argument("rest_url"), parser.add_argument("leader")
    parser.add_argument("followers", nargs="+")
    parser.add_argument("--seconds", type=float, default=900.0)
    args = parser.parse_args()
    apis = []
    for pair in args.followers:
        context = DhanContext(*pair.split(":", 1))
        context.get_dhan_http().base_url, context.get_dhan_http().timeout = args.rest_url, 10
        apis.append(dhanhq(context))
    client_id, token = args.leader.split(":", 1)
    seen: set[str] = set()
    deadline = time.monotonic() + args.seconds
    with connect(args.ws_url) as ws:
        ws.send(json.dumps({"LoginReq": {"MsgCode": 42, "ClientId": client_id, "Token": token},
                            "UserType": "SELF"}))
        while time.monotonic() < deadline:
            try:
                frame = json.loads(ws.recv(timeout=1.0))
            except TimeoutError:
                continue
            data = frame.get("Data") or {}
            if data.get("Status") not in ACCEPTED or data["OrderNo"] in seen:
                continue
            seen.add(data["OrderNo"])
            for api in apis:
                api.place_order(data["SecurityId"], SEGMENTS[data["Exchange"], data["Segment"]],
                                "BUY" if data["TxnType"] == "B" else "SELL", data["Quantity"],
                                TYPES[data["OrderType"]], PRODUCTS[data["Product"]],
                                data["Price"], data["TriggerPrice"], validity=data["Validity"])


if __name__ == "__main__":
    main()
