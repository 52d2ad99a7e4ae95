//! Commands on protocols: open, find (and adopt), reconcile; and the CNAPS lookup.

use super::inputs::NewProtocol;
use super::{Engine, metrics};
use crate::domain::{Protocol, RemoteBalances};
use crate::event::{Anomaly, Event, EventKind};
use crate::ledger::Ledger;
use crate::observation::Source;
use crate::wire::validate::{self, limits};
use crate::wire::{
    Amount, CashierType, ChannelType, CnapsEntry, CreateProtocol, FindProtocol, QueryBankCnaps, RemoteProtocol,
};
use crate::{Error, Result};

impl Engine {
    /// Open a protocol. The attempt is recorded before the call; if the reply is lost, a
    /// `PossibleOrphanProtocol` anomaly says so (an empty protocol may exist remotely; it holds
    /// no money, and [`Engine::refresh_protocol`] adopts it if its `transNo` turns up).
    ///
    /// The payment system's `create` carries no request number of ours, so only protopay can
    /// make it idempotent: with an `idempotency_key`, a repeat answers the protocol the key
    /// opened, without sending anything ([`Error::OpenedOtherwise`] if its parameters
    /// differ). A key whose every call so far failed, or whose reply was lost, opened nothing
    /// here, and the repeat sends `create` again; two calls with one key racing may each open
    /// one, and both answer the one stored first (the other is stored too: it exists, empty).
    #[tracing::instrument(skip_all, fields(business_id = %cmd.business_id))]
    pub async fn create_protocol(&self, cmd: NewProtocol) -> Result<Protocol> {
        let _working = self.working()?;
        validate::required("transDesc", &cmd.trans_desc)?;
        validate::required("businessId", &cmd.business_id)?;
        validate::text("transDesc", &cmd.trans_desc, limits::TRANS_DESC_MAX_CHARS)?;
        validate::text("businessId", &cmd.business_id, limits::BUSINESS_ID_MAX_CHARS)?;
        if !cmd.cashier_type.is_known() {
            return Err(Error::InvalidField {
                field: "cashierType",
                reason: "must be POS or QP",
            });
        }
        if let Some(key) = &cmd.idempotency_key {
            validate::idempotency_key(key)?;
            if let Some(opened) = self.opened_by(key, &cmd).await? {
                return Ok(opened);
            }
        }
        let attempt = self.generate_out_req_no();
        let requested = self.event(
            None,
            Source::Engine,
            EventKind::ProtocolCreateRequested {
                attempt: attempt.clone(),
            },
        );
        self.record_events(vec![requested], Vec::new()).await?;
        let request = CreateProtocol {
            channel_type: ChannelType::Lft,
            trans_desc: cmd.trans_desc.clone(),
            business_id: cmd.business_id.clone(),
            cashier_type: Some(cmd.cashier_type.clone()),
        };
        match self.call(&request).await {
            Ok(view) => {
                let protocol = Protocol::from_view(&view, &cmd.business_id, &cmd.trans_desc, cmd.cashier_type);
                let created = self.protocol_event(
                    &protocol.trans_no,
                    Source::Reply,
                    EventKind::ProtocolCreated { attempt },
                );
                self.record_opened(&protocol, &created, cmd.idempotency_key.as_deref())
                    .await
            }
            Err(e @ (Error::Remote { .. } | Error::NotFound(_))) => Err(e),
            Err(Error::Transport(t)) if !t.maybe_delivered() => Err(Error::Transport(t)),
            Err(e) => {
                let orphan = Anomaly::PossibleOrphanProtocol { attempt };
                let event = self.event(None, Source::Reply, EventKind::Anomaly(orphan));
                self.record_events(vec![event], Vec::new()).await?;
                Err(e)
            }
        }
    }

    /// The protocol `key` opened, if it opened one; refused if `cmd` asks for another.
    async fn opened_by(&self, key: &str, cmd: &NewProtocol) -> Result<Option<Protocol>> {
        let Some(trans_no) = self.storage().opening(key).await? else {
            return Ok(None);
        };
        let opened = self.protocol(&trans_no).await?;
        let fields: Vec<&'static str> = [
            ("transDesc", opened.trans_desc != cmd.trans_desc),
            ("businessId", opened.business_id != cmd.business_id),
            ("cashierType", opened.cashier_type != cmd.cashier_type),
        ]
        .into_iter()
        .filter_map(|(field, differs)| differs.then_some(field))
        .collect();
        if fields.is_empty() {
            Ok(Some(opened))
        } else {
            Err(Error::OpenedOtherwise { trans_no, fields })
        }
    }

    /// Ask the payment system about a protocol and store its balances. A protocol not yet
    /// known here is adopted, its available balance recorded as its opening balance (so it
    /// can pay out what it holds, and reconciles).
    #[tracing::instrument(skip(self))]
    pub async fn refresh_protocol(&self, trans_no: &str) -> Result<Protocol> {
        let _working = self.working()?;
        self.refresh_unguarded(trans_no).await
    }

    async fn refresh_unguarded(&self, trans_no: &str) -> Result<Protocol> {
        validate::required("transNo", trans_no)?;
        let view = self
            .call(&FindProtocol {
                trans_no: trans_no.to_owned(),
            })
            .await?;
        if view.trans_no != trans_no {
            return Err(Error::InvalidField {
                field: "transNo",
                reason: "reply names another protocol",
            });
        }
        let balances = self.balances(&view);
        let opening = balances.available;
        let adopted = self.protocol_event(trans_no, Source::Reply, EventKind::ProtocolAdopted { opening });
        self.update_protocol(trans_no, |stored| {
            Some(match stored {
                Some(p) => (
                    Protocol {
                        remote: Some(balances.clone()),
                        ..p.clone()
                    },
                    Vec::new(),
                ),
                None => {
                    let p = Protocol::from_view(&view, "", "", CashierType::Pos);
                    let ledger = Ledger::opened_with(opening);
                    (
                        Protocol {
                            remote: Some(balances.clone()),
                            ledger,
                            ..p
                        },
                        vec![adopted.clone()],
                    )
                }
            })
        })
        .await
    }

    fn balances(&self, view: &RemoteProtocol) -> RemoteBalances {
        RemoteBalances {
            available: view.amount.unwrap_or(Amount::ZERO),
            in_transit: view.onpassage_amount.unwrap_or(Amount::ZERO),
            paid_out: view.out_amount.unwrap_or(Amount::ZERO),
            seen_at: self.now(),
        }
    }

    /// Look up CNAPS numbers by a keyword of the branch name.
    #[tracing::instrument(skip(self))]
    pub async fn query_cnaps(&self, keyword: &str) -> Result<Vec<CnapsEntry>> {
        let _working = self.working()?;
        validate::required("bankNameKeyWord", keyword)?;
        validate::text("bankNameKeyWord", keyword, limits::KEYWORD_MAX_CHARS)?;
        self.call(&QueryBankCnaps {
            bank_name_key_word: keyword.to_owned(),
        })
        .await
    }

    /// Compare our ledger with the payment system's balances and report drift (also as
    /// `BalanceDrift` events). Never moves money.
    ///
    /// Compared: their `onpassageAmount` with our `in_transit`; their `outAmount` with our
    /// `paid_out + refunded`; their total (`amount + onpassageAmount + outAmount`) with ours
    /// less what is reserved for payouts still in flight (which they may hold apart).
    #[tracing::instrument(skip(self))]
    pub async fn reconcile(&self, trans_no: &str) -> Result<Reconciliation> {
        self.reconcile_metered(trans_no, None).await
    }

    /// [`reconcile`](Self::reconcile), asked by a person: the same comparison, and an audit
    /// record ([`EventKind::OperatorReconciled`]: who, why, how many figures disagreed) in
    /// the same commit as the drift it finds, whether or not anything disagrees.
    #[tracing::instrument(skip(self, note))]
    pub async fn reconcile_by(&self, trans_no: &str, by: &str, note: &str) -> Result<Reconciliation> {
        validate::required("note", note)?;
        validate::text("note", note, limits::NOTE_MAX_CHARS)?;
        self.reconcile_metered(trans_no, Some((by, note))).await
    }

    async fn reconcile_metered(&self, trans_no: &str, person: Option<(&str, &str)>) -> Result<Reconciliation> {
        let result = self.reconcile_unmetered(trans_no, person).await;
        let mut drifting = self.inner.drifting.lock().unwrap_or_else(|p| p.into_inner());
        match &result {
            Ok(r) if r.drift.is_empty() => {
                drifting.remove(trans_no);
                metrics::reconciled("agreed");
            }
            Ok(_) => {
                if drifting.len() < 100_000 {
                    drifting.insert(trans_no.to_owned());
                }
                metrics::reconciled("drift");
            }
            Err(_) => metrics::reconciled("failed"),
        }
        metrics::protocols_drifting(drifting.len());
        result
    }

    async fn reconcile_unmetered(&self, trans_no: &str, person: Option<(&str, &str)>) -> Result<Reconciliation> {
        let _working = self.working()?;
        // Only a protocol known here has books to reconcile (an unknown one is adopted by
        // `refresh_protocol`, not here): the same answer as reading it.
        self.protocol(trans_no).await?;
        let protocol = self.refresh_unguarded(trans_no).await?;
        let theirs = protocol.remote.clone().ok_or_else(|| Error::UnknownProtocol {
            trans_no: trans_no.to_owned(),
        })?;
        let ours = protocol.ledger;
        let sum = |xs: &[Amount]| xs.iter().try_fold(Amount::ZERO, |a, b| a.checked_add(*b));
        let figures = [
            ("in_transit", Some(ours.in_transit), Some(theirs.in_transit)),
            ("paid_out", sum(&[ours.paid_out, ours.refunded]), Some(theirs.paid_out)),
            (
                "total",
                sum(&[ours.in_transit, ours.available, ours.paid_out, ours.refunded]),
                sum(&[theirs.available, theirs.in_transit, theirs.paid_out]),
            ),
        ];
        let drift: Vec<Anomaly> = figures
            .into_iter()
            .filter_map(|(figure, o, t)| match (o, t) {
                (Some(ours), Some(theirs)) if ours == theirs => None,
                (o, t) => Some(Anomaly::BalanceDrift {
                    figure: figure.to_owned(),
                    ours: o.unwrap_or(Amount::ZERO),
                    theirs: t.unwrap_or(Amount::ZERO),
                }),
            })
            .collect();
        let mut events: Vec<Event> = drift
            .iter()
            .map(|a| self.protocol_event(trans_no, Source::Poll, EventKind::Anomaly(a.clone())))
            .collect();
        if let Some((by, note)) = person {
            let drifting = u32::try_from(drift.len()).unwrap_or(u32::MAX);
            let kind = EventKind::OperatorReconciled {
                note: note.to_owned(),
                by: by.to_owned(),
                drifting,
            };
            events.push(self.protocol_event(trans_no, Source::Operator, kind));
        }
        if !events.is_empty() {
            self.record_events(events, Vec::new()).await?;
        }
        Ok(Reconciliation {
            trans_no: trans_no.to_owned(),
            ours,
            theirs,
            drift,
        })
    }
}

/// Our ledger next to the payment system's balances. Reported, never acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciliation {
    /// The protocol.
    pub trans_no: String,
    /// Our books.
    pub ours: Ledger,
    /// Theirs, just fetched.
    pub theirs: RemoteBalances,
    /// Every figure that disagrees (empty when all agree).
    pub drift: Vec<Anomaly>,
}
