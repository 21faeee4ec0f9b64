"""Response codes (ISO 8583:1987 field 39): meaning, CUP text and category, and what a terminal does.

Source: docs/domain.md#response-codes (ISO meanings; CUP categories A-E from the CUP response-code tables).

>>> lookup(APPROVED).action
<TerminalAction.APPROVED: 'approved'>
>>> lookup("77").action, lookup("95").action
(<TerminalAction.RESIGN_ON: 're_sign_on'>, <TerminalAction.RECONCILE: 'reconcile'>)
>>> lookup("X7").meaning
'unknown response code'
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


class TerminalAction(enum.Enum):
    """What a well-built terminal does on receiving a response code."""

    #: Approved: commit the journal, clear the pending reversal, print.
    APPROVED = "approved"
    #: Declined: tell the operator; do not retry the same request.
    DECLINE_NO_RETRY = "decline_no_retry"
    #: Temporary failure: try again later (new STAN), with backoff.
    RETRY_LATER = "retry_later"
    #: Keys, batch or state out of step with the host: sign on again, then redo.
    RESIGN_ON = "re_sign_on"
    #: Books disagree: reconcile (INTL settlement: batch upload; 94: check the journal).
    RECONCILE = "reconcile"


@dataclass(frozen=True, kw_only=True, slots=True)
class ResponseCode:
    code: str
    meaning: str
    cup_text: str
    cup_category: str
    action: TerminalAction

    @property
    def approved(self) -> bool:
        return self.action is TerminalAction.APPROVED


APPROVED = "00"
INVALID_MERCHANT = "03"
DO_NOT_HONOR = "05"
ERROR = "06"
REQUEST_IN_PROGRESS = "09"
INVALID_TRANSACTION = "12"
INVALID_AMOUNT = "13"
INVALID_CARD_NUMBER = "14"
REENTER_TRANSACTION = "19"
SUSPECTED_MALFUNCTION = "22"
UNABLE_TO_LOCATE_RECORD = "25"
FORMAT_ERROR = "30"
EXPIRED_CARD_PICKUP = "33"
NOT_SUFFICIENT_FUNDS = "51"
EXPIRED_CARD = "54"
INCORRECT_PIN = "55"
NOT_PERMITTED_TO_CARDHOLDER = "57"
NOT_PERMITTED_TO_TERMINAL = "58"
SUSPECTED_FRAUD = "59"
EXCEEDS_AMOUNT_LIMIT = "61"
RESTRICTED_CARD = "62"
SECURITY_VIOLATION = "63"
EXCEEDS_FREQUENCY_LIMIT = "65"
RESPONSE_TOO_LATE = "68"
BATCH_MISMATCH = "77"
OFFLINE_UNBALANCED = "79"
CUTOVER_IN_PROGRESS = "90"
ISSUER_INOPERATIVE = "91"
ROUTING_NOT_FOUND = "92"
DUPLICATE_TRANSMISSION = "94"
RECONCILE_ERROR = "95"
SYSTEM_MALFUNCTION = "96"
TERMINAL_NOT_REGISTERED = "97"
ISSUER_NO_ANSWER = "98"
PIN_FORMAT_ERROR = "99"
MAC_ERROR = "A0"

_A = TerminalAction
_TABLE: tuple[tuple[str, str, str, str, TerminalAction], ...] = (
    (APPROVED, "approved", "承兑或交易成功", "A", _A.APPROVED),
    (INVALID_MERCHANT, "invalid merchant", "商户未登记", "C", _A.DECLINE_NO_RETRY),
    (DO_NOT_HONOR, "do not honor", "发卡行不予承兑", "C", _A.DECLINE_NO_RETRY),
    (ERROR, "error", "发卡行故障", "E", _A.DECLINE_NO_RETRY),
    (REQUEST_IN_PROGRESS, "request in progress", "重新提交", "B", _A.RETRY_LATER),
    (INVALID_TRANSACTION, "invalid transaction", "发卡行不支持的交易", "C", _A.DECLINE_NO_RETRY),
    (INVALID_AMOUNT, "invalid amount", "金额为0或太大", "B", _A.DECLINE_NO_RETRY),
    (INVALID_CARD_NUMBER, "invalid card number", "无效卡号", "B", _A.DECLINE_NO_RETRY),
    (REENTER_TRANSACTION, "re-enter transaction", "刷卡读取数据有误", "C", _A.DECLINE_NO_RETRY),
    (SUSPECTED_MALFUNCTION, "suspected malfunction", "POS 状态与中心不符，可重新签到", "C", _A.RESIGN_ON),
    (UNABLE_TO_LOCATE_RECORD, "unable to locate record", "发卡行未能找到有关记录", "C", _A.DECLINE_NO_RETRY),
    (FORMAT_ERROR, "format error", "格式错误", "C", _A.DECLINE_NO_RETRY),
    (EXPIRED_CARD_PICKUP, "expired card, pick up", "过期的卡", "D", _A.DECLINE_NO_RETRY),
    (NOT_SUFFICIENT_FUNDS, "not sufficient funds", "余额不足", "C", _A.DECLINE_NO_RETRY),
    (EXPIRED_CARD, "expired card", "过期的卡", "C", _A.DECLINE_NO_RETRY),
    (INCORRECT_PIN, "incorrect PIN", "密码错", "C", _A.DECLINE_NO_RETRY),
    (NOT_PERMITTED_TO_CARDHOLDER, "transaction not permitted to cardholder", "不允许持卡人进行的交易", "C", _A.DECLINE_NO_RETRY),
    (NOT_PERMITTED_TO_TERMINAL, "transaction not permitted to terminal", "该商户不允许进行的交易", "C", _A.DECLINE_NO_RETRY),
    (SUSPECTED_FRAUD, "suspected fraud", "有作弊嫌疑", "C", _A.DECLINE_NO_RETRY),
    (EXCEEDS_AMOUNT_LIMIT, "exceeds withdrawal amount limit", "超出金额限制", "C", _A.DECLINE_NO_RETRY),
    (RESTRICTED_CARD, "restricted card", "受限制的卡", "C", _A.DECLINE_NO_RETRY),
    (SECURITY_VIOLATION, "security violation", "侵犯安全", "C", _A.DECLINE_NO_RETRY),
    (EXCEEDS_FREQUENCY_LIMIT, "exceeds withdrawal frequency limit", "超出消费次数限制", "C", _A.DECLINE_NO_RETRY),
    (RESPONSE_TOO_LATE, "response received too late", "发卡行规定时间内没有回答", "C", _A.DECLINE_NO_RETRY),
    (BATCH_MISMATCH, "batch number out of step (private)", "POS 批次与网络中心不一致", "D", _A.RESIGN_ON),
    (OFFLINE_UNBALANCED, "offline data unbalanced (private)", "脱机数据对账不平", "C", _A.RECONCILE),
    (CUTOVER_IN_PROGRESS, "cutoff is in process", "日期切换正在处理", "C", _A.RETRY_LATER),
    (ISSUER_INOPERATIVE, "issuer or switch inoperative", "发卡方或银联不能操作", "C", _A.RETRY_LATER),
    (ROUTING_NOT_FOUND, "financial institution cannot be found for routing", "金融机构或中间网络设施找不到或无法达到", "C", _A.RETRY_LATER),
    (DUPLICATE_TRANSMISSION, "duplicate transmission", "重复交易", "C", _A.RECONCILE),
    (RECONCILE_ERROR, "reconcile error", "调节控制错", "C", _A.RECONCILE),
    (SYSTEM_MALFUNCTION, "system malfunction", "发卡方或网络中心出现故障", "C", _A.RETRY_LATER),
    (TERMINAL_NOT_REGISTERED, "terminal not registered (private)", "终端未在中心或银行登记", "D", _A.DECLINE_NO_RETRY),
    (ISSUER_NO_ANSWER, "issuer did not answer in time (private)", "银联收不到发卡行应答", "E", _A.RETRY_LATER),
    (PIN_FORMAT_ERROR, "PIN format error (private)", "PIN 格式错，可重新签到", "B", _A.RESIGN_ON),
    (MAC_ERROR, "MAC verification failed (private)", "MAC 校验错，请重新签到", "B", _A.RESIGN_ON),
)

CODES: Mapping[str, ResponseCode] = MappingProxyType({
    code: ResponseCode(code=code, meaning=meaning, cup_text=cup, cup_category=cat, action=action)
    for code, meaning, cup, cat, action in _TABLE
})


def lookup(code: str) -> ResponseCode:
    """The table entry for a code; an unknown code is a decline the terminal does not retry."""
    return CODES.get(code) or ResponseCode(code=code, meaning="unknown response code", cup_text="未知应答码",
                                           cup_category="C", action=TerminalAction.DECLINE_NO_RETRY)
