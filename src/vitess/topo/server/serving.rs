//! Keyspace VSchemas, routing rules and the cell-level serving records of [`TopoServer`].

use super::*;

impl TopoServer {
    // ----- Keyspace VSchema -----------------------------------------------------------------

    /// Reads `keyspaces/<ks>/VSchema`.
    pub async fn get_vschema(&self, keyspace: &str) -> Result<Versioned<vschema::Keyspace>> {
        validate_name("keyspace", keyspace)?;
        self.get_global(&rel::vschema(keyspace)).await
    }

    /// Writes a keyspace VSchema: at `version` if given (BadVersion if it changed), otherwise
    /// unconditionally (creating it).
    pub async fn save_vschema(
        &self,
        guard: &KeyspaceLock,
        keyspace: &str,
        record: &vschema::Keyspace,
        version: Option<Version>,
    ) -> Result<Version> {
        validate_name("keyspace", keyspace)?;
        self.verify_keyspace_guard(guard, keyspace)?;
        guard.check().await?;
        let key = self.key(&rel::vschema(keyspace));
        let bytes = record.encode_record();
        let written = self
            .global
            .write_fenced(FencedWrite {
                key: &key,
                change: Change::Put(&bytes),
                expected: version.map_or(Expected::Any, Expected::At),
                fences: &[guard.key()],
            })
            .await?;
        put_version(&key, written)
    }

    /// Read-modify-write of a keyspace VSchema; a missing VSchema starts empty and is created.
    pub async fn update_vschema<F>(
        &self,
        guard: &KeyspaceLock,
        keyspace: &str,
        change: F,
    ) -> Result<Versioned<vschema::Keyspace, Option<Version>>>
    where
        F: FnMut(&mut vschema::Keyspace) -> Result<bool>,
    {
        validate_name("keyspace", keyspace)?;
        self.verify_keyspace_guard(guard, keyspace)?;
        let key = self.key(&rel::vschema(keyspace));
        let mode = RmwMode {
            missing_is_empty: true,
            empty_deletes: false,
        };
        Self::read_modify_write(self.global.as_ref(), &key, mode, &[guard.handle()], change).await
    }

    /// Deletes a keyspace VSchema (at `version` if given).
    pub async fn delete_vschema(
        &self,
        guard: &KeyspaceLock,
        keyspace: &str,
        version: Option<Version>,
    ) -> Result<()> {
        validate_name("keyspace", keyspace)?;
        self.verify_keyspace_guard(guard, keyspace)?;
        guard.check().await?;
        self.global
            .write_fenced(FencedWrite {
                key: &self.key(&rel::vschema(keyspace)),
                change: Change::Delete,
                expected: version.map_or(Expected::Any, Expected::At),
                fences: &[guard.key()],
            })
            .await
            .map(|_| ())
    }

    // ----- Routing rules --------------------------------------------------------------------

    /// Reads the global `RoutingRules`; a missing key reads as empty rules with no version.
    pub async fn get_routing_rules(&self) -> Result<Versioned<RoutingRules, Option<Version>>> {
        Self::get_or_empty(self.global.as_ref(), &self.key(names::ROUTING_RULES_FILE)).await
    }

    /// Replaces the routing rules, expecting them still at `expected` (the version read; `None`
    /// for "absent"), BadVersion otherwise. Every keyspace a changed rule names must be covered
    /// by one of `guards`. Empty rules delete the key, as Vitess does. Returns the new version
    /// (`None` when the key no longer exists).
    pub async fn save_routing_rules(
        &self,
        guards: &[&KeyspaceLock],
        rules: &RoutingRules,
        expected: Option<Version>,
    ) -> Result<Option<Version>> {
        let key = self.key(names::ROUTING_RULES_FILE);
        let current: Versioned<RoutingRules, Option<Version>> =
            Self::get_or_empty(self.global.as_ref(), &key).await?;
        if current.version != expected {
            return Err(TopoError::BadVersion { key });
        }
        let affected = affected_keyspaces(&current.value, rules)?;
        if affected.is_empty() && current.value == *rules {
            return Ok(current.version);
        }
        self.check_routing_guards(guards, &affected).await?;
        let bytes = rules.encode_record();
        let fences: Vec<&str> = guards.iter().map(|guard| guard.key()).collect();
        let change = match (bytes.is_empty(), expected) {
            (true, None) => return Ok(None),
            (true, Some(_)) => Change::Delete,
            (false, _) => Change::Put(&bytes),
        };
        self.global
            .write_fenced(FencedWrite {
                key: &key,
                change,
                expected: expected.map_or(Expected::Absent, Expected::At),
                fences: &fences,
            })
            .await
            .map_err(|e| {
                // "Absent" was the version the caller read: someone created it since.
                if e.is_node_exists() {
                    TopoError::BadVersion { key: key.clone() }
                } else {
                    e
                }
            })
    }

    /// Read-modify-write of the routing rules (missing = empty; empty result deletes the key),
    /// retrying on BadVersion. Every keyspace named by a rule the change touches must be covered
    /// by one of `guards`.
    pub async fn update_routing_rules<F>(
        &self,
        guards: &[&KeyspaceLock],
        mut change: F,
    ) -> Result<Versioned<RoutingRules, Option<Version>>>
    where
        F: FnMut(&mut RoutingRules) -> Result<bool>,
    {
        let key = self.key(names::ROUTING_RULES_FILE);
        let mode = RmwMode {
            missing_is_empty: true,
            empty_deletes: true,
        };
        let handles: Vec<&LockHandle> = guards.iter().map(|g| g.handle()).collect();
        Self::read_modify_write(
            self.global.as_ref(),
            &key,
            mode,
            &handles,
            |rules: &mut RoutingRules| {
                let before = rules.clone();
                if !change(rules)? {
                    return Ok(false);
                }
                let affected = affected_keyspaces(&before, rules)?;
                self.verify_routing_guards(guards, &affected)?;
                Ok(true)
            },
        )
        .await
    }

    fn verify_routing_guards(
        &self,
        guards: &[&KeyspaceLock],
        affected: &std::collections::BTreeSet<String>,
    ) -> Result<()> {
        if guards.is_empty() {
            return Err(TopoError::NotLocked {
                resource: "routing rules".to_string(),
                reason: "a routing-rule change needs the lock of every keyspace it affects, and none was passed".to_string(),
            });
        }
        self.verify_keyspaces_covered(guards, affected, "the routing-rule update")
    }

    async fn check_routing_guards(
        &self,
        guards: &[&KeyspaceLock],
        affected: &std::collections::BTreeSet<String>,
    ) -> Result<()> {
        self.verify_routing_guards(guards, affected)?;
        for guard in guards {
            guard.check().await?;
        }
        Ok(())
    }

    /// Reads the global `ShardRoutingRules`; missing reads as empty.
    pub async fn get_shard_routing_rules(
        &self,
    ) -> Result<Versioned<ShardRoutingRules, Option<Version>>> {
        Self::get_or_empty(
            self.global.as_ref(),
            &self.key(names::SHARD_ROUTING_RULES_FILE),
        )
        .await
    }

    /// Reads `routing_rules/keyspace/Rules`; missing reads as empty.
    pub async fn get_keyspace_routing_rules(
        &self,
    ) -> Result<Versioned<KeyspaceRoutingRules, Option<Version>>> {
        Self::get_or_empty(
            self.global.as_ref(),
            &self.key(names::KEYSPACE_ROUTING_RULES_KEY),
        )
        .await
    }

    /// Reads the global `MirrorRules`; missing reads as empty.
    pub async fn get_mirror_rules(&self) -> Result<Versioned<MirrorRules, Option<Version>>> {
        Self::get_or_empty(self.global.as_ref(), &self.key(names::MIRROR_RULES_FILE)).await
    }

    // ----- Cell-level serving data ----------------------------------------------------------

    /// Reads a cell's `SrvVSchema`.
    pub async fn get_srv_vschema(&self, cell: &str) -> Result<Versioned<SrvVSchema>> {
        let topo = self.cell(cell).await?;
        let key = topo.key(names::SRV_VSCHEMA_FILE);
        let (bytes, version) = topo.store.get(&key).await?;
        Ok(Versioned {
            value: decode(&key, &bytes)?,
            version,
        })
    }

    /// Writes a cell's `SrvVSchema` (derived data, rebuilt from the global records: no lock), at
    /// `version` if given, otherwise unconditionally.
    pub async fn update_srv_vschema(
        &self,
        cell: &str,
        record: &SrvVSchema,
        version: Option<Version>,
    ) -> Result<Version> {
        let topo = self.cell(cell).await?;
        topo.store
            .update(
                &topo.key(names::SRV_VSCHEMA_FILE),
                &record.encode_record(),
                version,
            )
            .await
    }

    /// Creates a cell's `SrvVSchema` (NodeExists when another writer created it first).
    pub async fn create_srv_vschema(&self, cell: &str, record: &SrvVSchema) -> Result<Version> {
        let topo = self.cell(cell).await?;
        topo.store
            .create(&topo.key(names::SRV_VSCHEMA_FILE), &record.encode_record())
            .await
    }

    /// Reads a cell's `keyspaces/<ks>/SrvKeyspace`.
    pub async fn get_srv_keyspace(
        &self,
        cell: &str,
        keyspace: &str,
    ) -> Result<Versioned<SrvKeyspace>> {
        validate_name("keyspace", keyspace)?;
        let topo = self.cell(cell).await?;
        let key = topo.key(&rel::srv_keyspace(keyspace));
        let (bytes, version) = topo.store.get(&key).await?;
        Ok(Versioned {
            value: decode(&key, &bytes)?,
            version,
        })
    }

    /// Writes a cell's SrvKeyspace under the keyspace lock (Vitess requires it too), at `version`
    /// if given, otherwise unconditionally.
    pub async fn update_srv_keyspace(
        &self,
        guard: &KeyspaceLock,
        cell: &str,
        keyspace: &str,
        record: &SrvKeyspace,
        version: Option<Version>,
    ) -> Result<Version> {
        validate_name("keyspace", keyspace)?;
        self.verify_keyspace_guard(guard, keyspace)?;
        let topo = self.cell(cell).await?;
        guard.check().await?;
        topo.store
            .update(
                &topo.key(&rel::srv_keyspace(keyspace)),
                &record.encode_record(),
                version,
            )
            .await
    }
}
