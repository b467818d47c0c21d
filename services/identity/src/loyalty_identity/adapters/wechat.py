"""The WeChat login exchange (`WeChatExchange`): a mini-program's login `code` swapped for the
member's openid (and unionid, when the mini-program's account is bound to an open platform).

- `WeChatJsCode2Session` calls WeChat's `jscode2session` endpoint over HTTPS (httpx), with the
  app id and secret configured (`LOYALTY_IDENTITY_WECHAT_APP_ID`, `..._APP_SECRET`). The session
  key WeChat answers is not kept.
- `DevelopmentWeChatFake` answers without WeChat, for development only (it is used only when
  `LOYALTY_IDENTITY_WECHAT_MODE=development`): the code `dev-<openid>` signs in as that openid,
  with the unionid `dev-union-<openid>`; any other code is refused.
"""

from __future__ import annotations

import httpx
from loyalty_kit.errors import FailedPrecondition, Unavailable
from loyalty_kit.logs import get_logger

from loyalty_identity.service_layer.sign_in import WeChatAccount, WeChatCodeRefused

log = get_logger("loyalty.identity.wechat")
JSCODE2SESSION = "https://api.weixin.qq.com/sns/jscode2session"
# WeChat's answers for a code that is not (or no longer) valid, or was used.
_CODE_ERRORS = {40029, 40163, 40226}


class WeChatNotConfigured(FailedPrecondition):
    reason = "WECHAT_NOT_CONFIGURED"

    def __init__(self) -> None:
        super().__init__("WeChat sign-in is not configured for this service")


class DevelopmentWeChatFake:
    """For development only: `dev-<openid>` is the member with that openid."""

    PREFIX = "dev-"

    async def exchange(self, code: str) -> WeChatAccount:
        openid = code.removeprefix(self.PREFIX)
        if not code.startswith(self.PREFIX) or not openid:
            raise WeChatCodeRefused()
        return WeChatAccount(openid=openid, unionid=f"dev-union-{openid}")

    async def close(self) -> None:
        return None


class WeChatJsCode2Session:
    def __init__(
        self, app_id: str, app_secret: str, url: str = JSCODE2SESSION, timeout: float = 5.0
    ) -> None:
        self.app_id = app_id
        self.app_secret = app_secret
        self.url = url
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    async def exchange(self, code: str) -> WeChatAccount:
        params = {
            "appid": self.app_id,
            "secret": self.app_secret,
            "js_code": code,
            "grant_type": "authorization_code",
        }
        try:
            response = await self._client.get(self.url, params=params)
            answer = response.json()
        except (httpx.HTTPError, ValueError) as error:
            log.warning("wechat exchange failed", error=type(error).__name__)
            raise Unavailable(
                "WeChat did not answer: try again", reason="WECHAT_UNAVAILABLE"
            ) from None
        errcode = int(answer.get("errcode") or 0)
        if errcode in _CODE_ERRORS:
            raise WeChatCodeRefused()
        if errcode == -1:  # WeChat busy
            raise Unavailable("WeChat is busy: try again", reason="WECHAT_UNAVAILABLE")
        openid = str(answer.get("openid") or "")
        if errcode or response.status_code != 200 or not openid:
            log.warning("wechat exchange refused", errcode=errcode, status=response.status_code)
            raise FailedPrecondition(
                "WeChat refused the exchange",
                reason="WECHAT_REFUSED",
                metadata={"errcode": str(errcode)},
            )
        return WeChatAccount(openid=openid, unionid=str(answer.get("unionid") or ""))

    async def close(self) -> None:
        await self._client.aclose()


class NoWeChat:
    """WeChat sign-in not configured: refused."""

    async def exchange(self, code: str) -> WeChatAccount:
        raise WeChatNotConfigured()

    async def close(self) -> None:
        return None
