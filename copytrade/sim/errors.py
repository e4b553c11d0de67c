"""Dhan's error replies: HTTP status plus the body `{errorType, errorCode, errorMessage}`."""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, http_status: int, code: str, error_type: str, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.http_status = http_status
        self.code = code
        self.error_type = error_type
        self.message = message

    def body(self) -> dict:
        return {"errorType": self.error_type, "errorCode": self.code, "errorMessage": self.message}


def invalid_token() -> ApiError:
    return ApiError(401, "DH-901", "Invalid_Authentication",
                    "Client ID or user generated access token is invalid or expired.")


def account_issue(message: str) -> ApiError:
    return ApiError(403, "DH-903", "User_Account", message)


def rate_limited() -> ApiError:
    return ApiError(429, "DH-904", "Rate_Limit",
                    "Too many requests on server from single user breaching rate limits.")


def bad_input(message: str) -> ApiError:
    return ApiError(400, "DH-905", "Input_Exception", message)


def order_error(message: str, http_status: int = 400) -> ApiError:
    return ApiError(http_status, "DH-906", "Order_Error", message)


def server_error() -> ApiError:
    return ApiError(500, "DH-908", "Internal_Server_Error",
                    "Internal server error: the request could not be processed.")


def no_data_plan() -> ApiError:
    # Dhan's DH-902 text for an account without a Data API subscription.
    return ApiError(403, "DH-902", "Invalid_Access",
                    "User has not subscribed to Data APIs or does not have access to Trading "
                    "APIs. Kindly subscribe to Data APIs to be able to fetch Data.")


def ip_not_whitelisted() -> ApiError:
    # dhan-api.md gives no code or text for this refusal: DH-905 naming the rule is our guess
    # (docs/sim.md says so).
    return bad_input("Order requests are accepted only from the static IP whitelisted for "
                     "this account; this request came from another IP.")
