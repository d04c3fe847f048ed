//! A devnet with our facilitator serving it, and a paywall charging through it: what tests of
//! paying clients stand on.

use std::sync::Arc;

use x402_facilitator::RunningFacilitator;
use x402_paywall::{PaymentOption, Paywall, PaywallConfig};
use x402_proto::Facilitator;

use crate::{Chain, start_facilitator};

/// A devnet and our facilitator settling on it, its log in a temporary folder.
#[derive(Debug)]
pub struct Settling {
    /// The chain.
    pub chain: Chain,
    /// The facilitator, serving HTTP.
    pub facilitator: RunningFacilitator,
    /// Its settlement log's folder.
    pub dir: tempfile::TempDir,
}

impl Settling {
    /// Starts a devnet (automine) and our facilitator on it.
    pub async fn start() -> Self {
        let chain = Chain::start().await;
        let dir = tempfile::tempdir().expect("a temporary folder");
        let facilitator = start_facilitator(&chain, dir.path()).await;
        Self {
            chain,
            facilitator,
            dir,
        }
    }

    /// The facilitator in process, behind the [`Facilitator`] trait.
    pub fn in_process(&self) -> Arc<dyn Facilitator> {
        Arc::new(self.facilitator.service().clone())
    }

    /// A paywall charging in the devnet's token, to its payee, through the facilitator in
    /// process; signed payments stay valid for two minutes.
    pub fn paywall(&self) -> Paywall {
        let option =
            PaymentOption::from_requirements(&self.chain.requirements(1), 6).with_max_timeout(120);
        Paywall::new(self.in_process(), vec![option], PaywallConfig::default())
            .expect("a paywall with one option")
    }
}
