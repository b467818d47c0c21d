"""The engagement service's composition root: what its servicer, consumers and jobs use, built
once per process from the kit's context. Tests hand in their own clock
(`runner.start(SPEC, settings, clock=clock)`)."""

from __future__ import annotations

from dataclasses import dataclass

from loyalty_kit.clock import Clock, utc_now
from loyalty_kit.server import ServiceContext
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from loyalty_engagement.adapters.peers import GrpcActions
from loyalty_engagement.adapters.sealing import SecretBox
from loyalty_engagement.adapters.sink import DevelopmentSink
from loyalty_engagement.adapters.webhooks import HttpSender
from loyalty_engagement.domain.channels import Backoff
from loyalty_engagement.service_layer.channels import DeliveryPolicy, Sender, WebhookChannel
from loyalty_engagement.service_layer.ports import Actions, register_channel
from loyalty_engagement.service_layer.uow import EngagementUnitOfWork


class EngagementSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOYALTY_ENGAGEMENT_", extra="ignore")

    timer_interval_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How often the journeys' timer runs the sweeps and the due waiting entries.",
    )
    webhook_key: str = Field(
        default="",
        description="Seals webhook secrets at rest: 32 bytes, base64 (unset: a development key "
        "made in the data folder).",
    )
    webhook_interval_seconds: float = Field(
        default=1.0, gt=0, description="How often due webhook deliveries are looked for."
    )
    webhook_timeout_seconds: float = Field(
        default=10.0, gt=0, description="How long a webhook endpoint has to answer."
    )
    webhook_max_attempts: int = Field(
        default=8, ge=1, description="Attempts before a webhook delivery is dead-lettered."
    )
    webhook_backoff_seconds: float = Field(
        default=5.0, gt=0, description="The wait before the second attempt (doubling, jittered)."
    )
    webhook_backoff_max_seconds: float = Field(
        default=3600.0, gt=0, description="The longest wait between attempts."
    )


@dataclass(frozen=True)
class Engagement:
    context: ServiceContext
    settings: EngagementSettings
    clock: Clock
    actions: Actions  # benefits, points and identity, on the service's own account
    secrets: SecretBox  # webhook secrets at rest
    sender: Sender  # the webhook channel's HTTP client
    delivery: DeliveryPolicy

    def uow(self, *, read_only: bool = False) -> EngagementUnitOfWork:
        return EngagementUnitOfWork(
            self.context.database, self.context.settings.event_namespace, read_only=read_only
        )


def bootstrap(context: ServiceContext, *, clock: Clock = utc_now) -> Engagement:
    settings = EngagementSettings()
    register_channel("dev", DevelopmentSink())
    register_channel("webhook", WebhookChannel())
    return Engagement(
        context,
        settings,
        clock,
        GrpcActions(context.settings),
        SecretBox.of(settings.webhook_key, context.settings.data_dir),
        HttpSender(settings.webhook_timeout_seconds),
        DeliveryPolicy(
            settings.webhook_max_attempts,
            Backoff(settings.webhook_backoff_seconds, settings.webhook_backoff_max_seconds),
        ),
    )
