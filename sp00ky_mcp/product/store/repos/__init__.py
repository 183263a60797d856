"""The repositories: one per area, each a class over a `Db` (a transaction's connection or
the store's reader) that takes and returns typed records.  Their SQL is the subset both
backends speak (`?` placeholders, ON CONFLICT, no rowid), so it is written once; where the
dialects differ, a repository asks `db.dialect`.  Secret values go in and come out in
plaintext: the repositories seal and open them with the store's `SecretBox`."""

from __future__ import annotations

from functools import cached_property

from ...secretbox import SecretBox
from ..port import Db
from .accounts import AccountsRepo
from .backups import BackupsRepo
from .billing import BillingRepo
from .deployments import DeploymentsRepo
from .domains import DomainsRepo
from .env import EnvRepo
from .idempotency import IdempotencyRepo
from .links import LinksRepo
from .logs import LogsRepo
from .oauth import OAuthRepo
from .projects import ProjectsRepo
from .support import SupportRepo
from .teams import TeamsRepo
from .tenancy import TenancyRepo
from .vault import VaultRepo


class Repos:
    """Every area's repository over one `Db`; each is made when first used."""

    def __init__(self, db: Db, box: SecretBox) -> None:
        self.db = db
        self.box = box

    @cached_property
    def accounts(self) -> AccountsRepo:
        return AccountsRepo(self.db)

    @cached_property
    def oauth(self) -> OAuthRepo:
        return OAuthRepo(self.db)

    @cached_property
    def tenancy(self) -> TenancyRepo:
        return TenancyRepo(self.db, self.box)

    @cached_property
    def idempotency(self) -> IdempotencyRepo:
        return IdempotencyRepo(self.db)

    @cached_property
    def projects(self) -> ProjectsRepo:
        return ProjectsRepo(self.db)

    @cached_property
    def deployments(self) -> DeploymentsRepo:
        return DeploymentsRepo(self.db)

    @cached_property
    def logs(self) -> LogsRepo:
        return LogsRepo(self.db)

    @cached_property
    def env(self) -> EnvRepo:
        return EnvRepo(self.db, self.box)

    @cached_property
    def vault(self) -> VaultRepo:
        return VaultRepo(self.db, self.box)

    @cached_property
    def backups(self) -> BackupsRepo:
        return BackupsRepo(self.db)

    @cached_property
    def domains(self) -> DomainsRepo:
        return DomainsRepo(self.db)

    @cached_property
    def links(self) -> LinksRepo:
        return LinksRepo(self.db)

    @cached_property
    def teams(self) -> TeamsRepo:
        return TeamsRepo(self.db)

    @cached_property
    def billing(self) -> BillingRepo:
        return BillingRepo(self.db)

    @cached_property
    def support(self) -> SupportRepo:
        return SupportRepo(self.db, self.box)
