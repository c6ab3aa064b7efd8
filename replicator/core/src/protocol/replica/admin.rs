//! The admin verbs (drbdadm's): primary [--force], secondary, connect [--discard-my-data],
//! disconnect, invalidate, verify.

use super::*;
use crate::types::Protocol;

impl Replica {
    fn wrong(&self, why: &'static str) -> AdminError {
        AdminError::WrongState {
            conn: self.conn,
            disk: self.disk,
            why,
        }
    }

    /// Drops the link so that a new handshake decides (used after `primary --force` and
    /// `invalidate` while connected); the daemon reconnects at once.
    fn renegotiate(&mut self, why: &str) {
        if let Some(conn) = self.link.as_ref().map(|l| l.conn) {
            self.emit(Output::CloseConnection {
                conn,
                reason: why.into(),
            });
            self.link_lost(why.into(), ConnState::WFConnection);
        }
    }

    /// `primary [--force]`. While connected this is a cluster-wide state change, as in DRBD: the
    /// peer must agree (it is not Primary itself and promises not to become Primary while this
    /// node is). If the link fails before it answers, the promotion fails: a node that cannot
    /// reach its peer is not known to hold the newest data.
    pub(super) fn cmd_primary(&mut self, force: bool) -> Result<AdminDone, AdminError> {
        if self.role == Role::Primary {
            return Ok(AdminDone::Done);
        }
        if self.promoting.is_some() {
            return Err(self.wrong("a promotion is already waiting for the peer's answer"));
        }
        self.check_promotion(force)?;
        if self.link.as_ref().is_some_and(|l| l.peer_hello.is_some()) {
            self.promoting = Some(force);
            self.send(crate::wire::Message::PromoteRequest);
            return Ok(AdminDone::Pending);
        }
        self.promote_now(force);
        Ok(AdminDone::Done)
    }

    pub(super) fn check_promotion(&self, force: bool) -> Result<(), AdminError> {
        use ConnState::*;
        if self.peer_role == Role::Primary {
            if !self.cfg.allow_two_primaries {
                return Err(AdminError::PeerIsPrimary);
            }
            if self.cfg.protocol != Protocol::C {
                return Err(AdminError::TwoPrimariesNeedProtocolC(self.cfg.protocol));
            }
        }
        if matches!(
            self.conn,
            WFReportParams | WFBitMapS | WFBitMapT | SyncTarget | VerifyS | VerifyT
        ) {
            return Err(
                self.wrong("wait until the handshake, the resync as target or the verify is over")
            );
        }
        let forced = self.disk != DiskState::UpToDate;
        if forced {
            if !force {
                return Err(AdminError::NoUpToDateData(self.disk));
            }
            if self.link.is_some() && self.peer_disk == DiskState::UpToDate {
                return Err(AdminError::PeerUpToDate);
            }
        }
        Ok(())
    }

    /// Promotes now (checks passed, the peer agreed or is not connected).
    pub(super) fn promote_now(&mut self, force: bool) {
        use ConnState::*;
        let forced = self.disk != DiskState::UpToDate;
        assert!(
            !forced || force,
            "promotion without UpToDate data and without --force"
        );
        // The indicator is durable before the activity log is ever used.
        if !self.flags.primary {
            self.flags.primary = true;
            self.emit(Output::PersistFlags(self.flags));
        }
        if forced {
            self.set_disk(DiskState::UpToDate);
        }
        let replicating_in_sync = self.link.is_some()
            && matches!(self.conn, Connected | SyncSource | VerifyS | VerifyT)
            && !forced;
        if !replicating_in_sync {
            self.new_current_uuid_if_needed();
        }
        // Sets the Primary flag on the current UUID and persists it.
        self.set_role(Role::Primary);
        self.crashed_primary = false;
        if forced && self.link.is_some() {
            self.renegotiate("primary --force: renegotiating the resync");
        }
    }

    /// The peer asks to become Primary.
    pub(super) fn on_promote_request(&mut self) {
        let mut ok = self.role != Role::Primary || self.cfg.allow_two_primaries;
        if ok && let Some(force) = self.promoting {
            // Both ask at once: the node with the lower node id wins.
            if self.cfg.node_id < self.cfg.peer_node_id {
                ok = false;
            } else {
                self.promoting = None;
                self.emit(Output::AdminResult {
                    cmd: AdminCommand::Primary { force },
                    result: Err(AdminError::PeerIsPrimary),
                });
            }
        }
        if ok {
            // From now on this node refuses to become Primary itself.
            self.peer_role = Role::Primary;
            self.notice(Notice::Peer {
                role: Role::Primary,
                disk: self.peer_disk,
            });
        }
        self.send(crate::wire::Message::PromoteReply { ok });
    }

    /// The peer answered our promotion request.
    pub(super) fn on_promote_reply(&mut self, ok: bool) {
        let Some(force) = self.promoting.take() else {
            return self.protocol_error_pub("PromoteReply without a request".into());
        };
        let cmd = AdminCommand::Primary { force };
        let result = if !ok {
            Err(AdminError::PeerIsPrimary)
        } else {
            self.check_promotion(force)
        };
        match result {
            Ok(()) => {
                self.promote_now(force);
                self.emit(Output::AdminResult {
                    cmd,
                    result: Ok(()),
                });
            }
            Err(e) => {
                // The peer may have noted us as Primary: tell it we are not.
                self.send_state();
                self.emit(Output::AdminResult {
                    cmd,
                    result: Err(e),
                });
            }
        }
    }

    /// The link went down with a promotion pending: it fails.
    pub(super) fn promotion_lost(&mut self) {
        if let Some(force) = self.promoting.take() {
            self.emit(Output::AdminResult {
                cmd: AdminCommand::Primary { force },
                result: Err(AdminError::WrongState {
                    conn: self.conn,
                    disk: self.disk,
                    why: "the connection was lost before the peer agreed to the promotion",
                }),
            });
        }
    }

    pub(super) fn cmd_secondary(&mut self) -> Result<(), AdminError> {
        if self.role == Role::Secondary {
            return Ok(());
        }
        let busy = self.writes_in_flight
            + self.reads_in_flight
            + self
                .client_flushes
                .values()
                .filter(|f| f.id.is_some())
                .count()
            + self.al_wait.len();
        if busy > 0 {
            return Err(AdminError::Busy(busy));
        }
        self.set_role(Role::Secondary);
        if self.unsettled > 0 {
            self.issue_barrier(None);
        }
        self.maybe_clear_primary_flag();
        Ok(())
    }

    pub(super) fn cmd_connect(&mut self, discard_my_data: bool) -> Result<(), AdminError> {
        if self.cfg.standalone {
            return Err(self.wrong("a standalone resource (one 'on' section) has no peer"));
        }
        if self.conn != ConnState::StandAlone {
            return Err(self.wrong("already connecting or connected; disconnect first"));
        }
        self.discard_my_data = discard_my_data;
        self.refusal = None;
        self.set_conn(ConnState::WFConnection);
        Ok(())
    }

    pub(super) fn cmd_disconnect(&mut self) -> Result<(), AdminError> {
        self.discard_my_data = false;
        match self.conn {
            ConnState::StandAlone => {}
            ConnState::WFConnection => {
                self.set_conn(ConnState::Disconnecting);
                self.set_conn(ConnState::StandAlone);
            }
            _ => {
                let conn = self.link.as_ref().expect("link").conn;
                self.emit(Output::CloseConnection {
                    conn,
                    reason: "disconnect".into(),
                });
                self.link_lost("disconnected by the admin".into(), ConnState::StandAlone);
            }
        }
        self.refusal = None;
        Ok(())
    }

    pub(super) fn cmd_invalidate(&mut self) -> Result<(), AdminError> {
        use ConnState::*;
        if self.cfg.standalone {
            return Err(
                self.wrong("a standalone resource (one 'on' section) has no peer to resync from")
            );
        }
        if self.role == Role::Primary {
            return Err(self.wrong("invalidate needs the Secondary role"));
        }
        if matches!(
            self.conn,
            WFReportParams | WFBitMapS | WFBitMapT | SyncSource | SyncTarget | VerifyS | VerifyT
        ) {
            return Err(self.wrong("wait until the handshake, resync or verify is over"));
        }
        if self.link.is_some()
            && !matches!(self.peer_disk, DiskState::UpToDate | DiskState::Consistent)
        {
            return Err(self.wrong("the peer has no consistent data to take"));
        }
        let blocks = self.bitmap.blocks();
        self.mark_out_of_sync(0, blocks);
        self.set_disk(DiskState::Inconsistent);
        self.renegotiate("invalidate: resync from the peer");
        Ok(())
    }

    pub(super) fn cmd_verify(&mut self) -> Result<(), AdminError> {
        let Some(alg) = self.cfg.verify_alg else {
            return Err(AdminError::NoVerifyAlg);
        };
        if self.conn != ConnState::Connected {
            return Err(self.wrong("online verify needs a Connected resource"));
        }
        if !matches!(self.disk, DiskState::UpToDate | DiskState::Consistent)
            || !matches!(self.peer_disk, DiskState::UpToDate | DiskState::Consistent)
        {
            return Err(self.wrong("online verify needs consistent data on both nodes"));
        }
        if self.peer_role == Role::Primary && self.role != Role::Primary {
            self.send(crate::wire::Message::VerifyAsk { alg });
        } else {
            self.start_verify(alg);
        }
        Ok(())
    }
}
