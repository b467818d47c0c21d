"""The identity service's composition root: everything its servicers, consumers, jobs and
commands use, built once per process from the kit's context. Tests hand in their own clock,
keyring or import settings (`runner.start(SPEC, settings, clock=clock)`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from loyalty_kit.auth import ServiceCredentials
from loyalty_kit.clock import Clock, utc_now
from loyalty_kit.server import ServiceContext
from loyalty_kit.servicers import UnitOfWorkFactory

from loyalty_identity.adapters.crypto import Keyring
from loyalty_identity.adapters.identity_types import IdentityTypeCache
from loyalty_identity.adapters.member_tokens import MemberTokenSigner
from loyalty_identity.adapters.messages import EngagementMessages
from loyalty_identity.adapters.wechat import DevelopmentWeChatFake, NoWeChat, WeChatJsCode2Session
from loyalty_identity.domain.member_code import GuessLimits
from loyalty_identity.domain.sign_in import Limit, RateLimits
from loyalty_identity.service_layer.erasure import ErasurePorts
from loyalty_identity.service_layer.import_jobs import ProcessSlots
from loyalty_identity.service_layer.import_worker import ImportWorker
from loyalty_identity.service_layer.order_import_worker import OrderImportWorker
from loyalty_identity.service_layer.sign_in import SignInPorts, WeChatExchange
from loyalty_identity.service_layer.uow import IdentityUnitOfWork
from loyalty_identity.settings import (
    ErasureSettings,
    ImportSettings,
    MemberCodeSettings,
    SignInSettings,
    keyring_for,
)


@dataclass(frozen=True)
class Identity:
    context: ServiceContext
    clock: Clock
    keyring: Keyring  # the keys that seal members' personal data and index their identities
    types: IdentityTypeCache  # identity types, read on every call, kept a few seconds
    uow: UnitOfWorkFactory[IdentityUnitOfWork]
    import_settings: ImportSettings
    importers: tuple[ImportWorker, ...]  # carry out member imports (the service's jobs)
    order_importers: tuple[OrderImportWorker, ...] = ()  # carry out order imports
    # Members signing in: codes sent through engagement, WeChat's exchange, token signing.
    sign_in: SignInPorts | None = None
    # How many wrong member codes a handle and a client may send before their scans wait.
    guess_limits: GuessLimits = field(default_factory=GuessLimits)
    # Members' own erasure requests: their codes' sender and key, the cooling-off.
    erasure: ErasurePorts | None = None
    erasure_sweep_seconds: float = 300.0

    def imports_waiting(self) -> None:
        """An upload was stored: this replica's workers start on it at once."""
        for worker in self.importers:
            worker.wake.set()

    def order_imports_waiting(self) -> None:
        """An order file was stored: this replica's order workers start on it at once."""
        for worker in self.order_importers:
            worker.wake.set()


def bootstrap(
    context: ServiceContext,
    *,
    clock: Clock = utc_now,
    keyring: Keyring | None = None,
    imports: ImportSettings | None = None,
    wechat: WeChatExchange | None = None,
    limits: RateLimits | None = None,
    guess_limits: GuessLimits | None = None,
    erasure: ErasureSettings | None = None,
) -> Identity:
    keys = keyring or keyring_for(context.settings)
    types = IdentityTypeCache()
    settings = imports or ImportSettings()

    def uow(*, read_only: bool = False) -> IdentityUnitOfWork:
        return IdentityUnitOfWork(
            context.database, context.settings.event_namespace, keys, types, read_only=read_only
        )

    processes = ProcessSlots(settings.prepare_processes)  # shared by the replica's workers
    workers = tuple(
        ImportWorker(uow, settings, clock, processes=processes) for _ in range(settings.workers)
    )
    order_workers = tuple(
        OrderImportWorker(uow, settings, clock, processes=processes)
        for _ in range(settings.workers)
    )
    messages = EngagementMessages(context.settings)  # sign-in and erasure codes alike
    sign_in = SignInPorts(
        messages,
        wechat or wechat_exchange(SignInSettings()),
        MemberTokenSigner(
            ServiceCredentials.from_settings("identity", context.settings.data_dir).signing
        ),
        limits or RateLimits(),
    )
    erasing = erasure or ErasureSettings()
    erasure_ports = ErasurePorts(
        messages,
        keys.derived_key("erasure-code"),
        timedelta(hours=erasing.cooling_off_hours),
    )
    return Identity(
        context,
        clock,
        keys,
        types,
        uow,
        settings,
        workers,
        order_workers,
        sign_in,
        guess_limits or member_code_guess_limits(MemberCodeSettings()),
        erasure_ports,
        erasing.sweep_seconds,
    )


def member_code_guess_limits(settings: MemberCodeSettings) -> GuessLimits:
    window = timedelta(seconds=settings.wrong_window_seconds)
    return GuessLimits(
        per_handle=Limit(settings.wrong_per_handle, window),
        per_client=Limit(settings.wrong_per_client, window),
    )


def wechat_exchange(settings: SignInSettings) -> WeChatExchange:
    """The WeChat exchange configured: the real one, the development fake, or none."""
    if settings.wechat_mode == "wechat":
        if not settings.wechat_app_id or not settings.wechat_app_secret:
            raise ValueError(
                "LOYALTY_IDENTITY_WECHAT_MODE=wechat needs LOYALTY_IDENTITY_WECHAT_APP_ID and "
                "LOYALTY_IDENTITY_WECHAT_APP_SECRET"
            )
        return WeChatJsCode2Session(
            settings.wechat_app_id, settings.wechat_app_secret, settings.wechat_url
        )
    if settings.wechat_mode == "development":
        return DevelopmentWeChatFake()
    return NoWeChat()
