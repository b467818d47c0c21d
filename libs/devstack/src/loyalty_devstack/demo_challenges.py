"""The demo's challenges, loaded through the engagement service's ChallengeService: the
cross-unit "Explorer" (a purchase at the mall, the hotel and the cinema in one quarter: 1,000
points funded by the group's budget and the Explorer badge). Looked up by name first, created
with a request id derived from the demo data: loading twice creates nothing new."""

from __future__ import annotations

from loyalty.engagement.v1 import challenges_pb2 as pb
from loyalty.engagement.v1.challenges_pb2_grpc import ChallengeServiceStub
from loyalty_kit.channels import channel
from loyalty_kit.settings import Settings

from loyalty_devstack.demo_caller import Part, demo_metadata

EXPLORER = pb.Challenge(
    display_name="Explorer",
    unit="group",
    goal=pb.Goal(kind=pb.GOAL_KIND_DISTINCT_UNITS, target=3, units=["mall", "hotel", "cinema"]),
    window=pb.Window(kind=pb.WINDOW_KIND_QUARTER),
    reward=pb.ChallengeReward(points=1000, funding_unit="group", badge="explorer"),
    time_zone="Asia/Shanghai",
)
CHALLENGES = (EXPLORER,)


async def load_challenges(settings: Settings) -> Part:
    metadata = demo_metadata(settings)
    created = 0
    async with channel(settings.target_of("engagement")) as ch:
        stub = ChallengeServiceStub(ch)
        names: set[str] = set()
        token = ""
        while True:
            page = await stub.ListChallenges(
                pb.ListChallengesRequest(page_size=200, page_token=token), metadata=metadata
            )
            names |= {c.display_name for c in page.challenges if c.unit == "group"}
            token = page.next_page_token
            if not token:
                break
        for challenge in CHALLENGES:
            if challenge.display_name in names:
                continue
            await stub.CreateChallenge(
                pb.CreateChallengeRequest(
                    challenge=challenge,
                    request_id=f"demo-challenge-{challenge.display_name.lower()}",
                ),
                metadata=metadata,
            )
            created += 1
    return Part("the Explorer challenge", created > 0)
