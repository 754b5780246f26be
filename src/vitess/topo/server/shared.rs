//! Decoded records shared between passes (`docs/design/topology.md`, "The watch cache").
//!
//! RoutingRules, every keyspace's VSchema, each cell's SrvVSchema and the Shard records (a
//! target shard denies every table moved into it until writes switch) grow with the number of
//! workflows, and every pass reads them. A version identifies a record's content, so each is
//! decoded once per version and handed out as an `Arc` to every pass that reads that version:
//! concurrent passes share one copy instead of holding one each. The same goes for what is
//! derived from them, keyed by the versions it was derived from (the SrvVSchema the global
//! records call for, which a pass compares with each cell's).

use std::any::Any;

use super::*;

/// A decoded record or derived value, with what it was made from.
type Shared = (Vec<Option<Version>>, Arc<dyn Any + Send + Sync>);

/// The shared values of one [`TopoServer`], by key (a record's key, or a derived value's name).
#[derive(Default)]
pub(super) struct SharedValues {
    by_key: Mutex<HashMap<String, Shared>>,
}

impl SharedValues {
    /// The value stored under `key` when it was made from `inputs`, else the one `make`
    /// makes (then stored, replacing the older one).
    fn get_or_make<T, E>(
        &self,
        key: &str,
        inputs: Vec<Option<Version>>,
        make: impl FnOnce() -> std::result::Result<T, E>,
    ) -> std::result::Result<Arc<T>, E>
    where
        T: Send + Sync + 'static,
    {
        if let Some((made_from, value)) = self
            .by_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            && *made_from == inputs
            && let Ok(value) = value.clone().downcast::<T>()
        {
            return Ok(value);
        }
        let value = Arc::new(make()?);
        self.by_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.to_string(), (inputs, value.clone()));
        Ok(value)
    }
}

impl TopoServer {
    /// Decodes `bytes` of `key` at `version`, or returns the copy decoded earlier for it.
    pub(super) fn decode_shared<M>(
        &self,
        key: &str,
        bytes: &[u8],
        version: Option<Version>,
    ) -> Result<Arc<M>>
    where
        M: Message + Default + Send + Sync + 'static,
    {
        self.shared
            .get_or_make(key, vec![version], || decode::<M>(key, bytes))
    }

    /// [`get_vschema`](Self::get_vschema), shared (see the module docs).
    pub async fn get_vschema_shared(
        &self,
        keyspace: &str,
    ) -> Result<Versioned<Arc<vschema::Keyspace>>> {
        validate_name("keyspace", keyspace)?;
        let key = self.key(&rel::vschema(keyspace));
        let (bytes, version) = self.global.get(&key).await?;
        Ok(Versioned {
            value: self.decode_shared(&key, &bytes, Some(version))?,
            version,
        })
    }

    /// [`get_routing_rules`](Self::get_routing_rules), shared (see the module docs).
    pub async fn get_routing_rules_shared(
        &self,
    ) -> Result<Versioned<Arc<RoutingRules>, Option<Version>>> {
        let key = self.key(names::ROUTING_RULES_FILE);
        match self.global.get(&key).await {
            Ok((bytes, version)) => Ok(Versioned {
                value: self.decode_shared(&key, &bytes, Some(version))?,
                version: Some(version),
            }),
            Err(TopoError::NoNode { .. }) => Ok(Versioned {
                value: Arc::default(),
                version: None,
            }),
            Err(e) => Err(e),
        }
    }

    /// [`get_srv_vschema`](Self::get_srv_vschema), shared (see the module docs).
    pub async fn get_srv_vschema_shared(&self, cell: &str) -> Result<Versioned<Arc<SrvVSchema>>> {
        let topo = self.cell(cell).await?;
        let key = topo.key(names::SRV_VSCHEMA_FILE);
        let (bytes, version) = topo.store.get(&key).await?;
        // Keyed by the cell's name too: two cells may share a store and root.
        Ok(Versioned {
            value: self.decode_shared(&format!("{cell}\u{0}{key}"), &bytes, Some(version))?,
            version,
        })
    }

    /// The value `make` derives, shared while `inputs` (the versions of the records it is
    /// derived from, in a fixed order) are unchanged.
    pub fn derived_shared<T, E>(
        &self,
        name: &str,
        inputs: Vec<Option<Version>>,
        make: impl FnOnce() -> std::result::Result<T, E>,
    ) -> std::result::Result<Arc<T>, E>
    where
        T: Send + Sync + 'static,
    {
        self.shared
            .get_or_make(&format!("\u{0}{name}"), inputs, make)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vitess::proto::vschema::RoutingRule;
    use crate::vitess::topo::MemoryStore;

    #[tokio::test]
    async fn a_record_is_decoded_once_per_version_and_shared() {
        let store = MemoryStore::new();
        let topo = TopoServer::new(
            Arc::new(store.clone()),
            "/vitess/global",
            store.shared_factory(),
        );
        let key = topo.key(names::ROUTING_RULES_FILE);
        let rules = |to: &str| RoutingRules {
            rules: vec![RoutingRule {
                from_table: "t".to_string(),
                to_tables: vec![to.to_string()],
            }],
        };
        let empty = topo.get_routing_rules_shared().await.expect("read");
        assert_eq!(empty.version, None);
        store
            .create(&key, &rules("a.t").encode_to_vec())
            .await
            .expect("written");
        let first = topo.get_routing_rules_shared().await.expect("read");
        let again = topo.get_routing_rules_shared().await.expect("read");
        assert!(Arc::ptr_eq(&first.value, &again.value));
        assert_eq!(*first.value, rules("a.t"));
        store
            .update(&key, &rules("b.t").encode_to_vec(), None)
            .await
            .expect("written");
        let changed = topo.get_routing_rules_shared().await.expect("read");
        assert!(!Arc::ptr_eq(&first.value, &changed.value));
        assert_eq!(*changed.value, rules("b.t"));
    }

    #[test]
    fn a_derived_value_is_made_again_when_an_input_changes() {
        let shared = SharedValues::default();
        let made = std::cell::Cell::new(0);
        let make = || {
            made.set(made.get() + 1);
            Ok::<_, TopoError>(made.get())
        };
        let inputs = |v: i64| vec![Some(Version(v)), None];
        let a = shared.get_or_make("x", inputs(1), make).expect("made");
        let b = shared.get_or_make("x", inputs(1), make).expect("shared");
        assert!(Arc::ptr_eq(&a, &b));
        let c = shared
            .get_or_make("x", inputs(2), make)
            .expect("made again");
        assert_eq!((*a, *c, made.get()), (1, 2, 2));
    }
}
