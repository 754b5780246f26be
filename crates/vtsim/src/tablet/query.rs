//! The query path the vtgate probe uses: reachability, the denied-tables rule (checked per
//! statement, as vttablet's query rules do), and writes and reads against the tablet's mysqld.

use super::*;

/// The shape of an application transaction of one write: `begin`, the statement's rule check,
/// `before_write`, the write (taking the table's metadata lock), `before_commit` idle, then
/// `commit`. The default is a single autocommit statement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transaction {
    /// Between the denied-tables check and the write (a slow statement).
    pub before_write: Duration,
    /// Between the write and the commit (an idle open transaction holding the lock).
    pub before_commit: Duration,
}

/// What a query through the probe (vtgate → vttablet) can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The tablet is down, refusing connections, or restarting.
    #[error("tablet {alias} is unavailable: {reason}")]
    Unavailable {
        /// Tablet alias.
        alias: String,
        /// Why.
        reason: String,
    },
    /// The table is in the tablet's denied tables (Vitess's query rule).
    #[error("{alias}: disallowed due to rule: enforce denied tables (table {table})")]
    Denied {
        /// Tablet alias.
        alias: String,
        /// The table.
        table: String,
    },
    /// A write reached a tablet that is not a primary.
    #[error(
        "{alias}: The MySQL server is running with the --super-read-only option so it cannot execute this statement (errno 1290) (sqlstate HY000)"
    )]
    ReadOnly {
        /// Tablet alias.
        alias: String,
    },
    /// MySQL refused the statement.
    #[error("{alias}: {error}")]
    Mysql {
        /// Tablet alias.
        alias: String,
        /// The MySQL error.
        error: MysqlError,
    },
}

impl QueryError {
    /// The gRPC code vttablet would answer with.
    pub fn code(&self) -> Code {
        match self {
            QueryError::Unavailable { .. } => Code::Unavailable,
            QueryError::Denied { .. } | QueryError::ReadOnly { .. } => Code::FailedPrecondition,
            QueryError::Mysql { .. } => Code::Unknown,
        }
    }
}

impl TabletCore {
    pub(crate) fn check_reachable_for_query(&self) -> Result<(), QueryError> {
        let unavailable = |reason: &str| QueryError::Unavailable {
            alias: self.alias_string.clone(),
            reason: reason.to_owned(),
        };
        if !self.is_up() {
            return Err(unavailable("the tablet is down"));
        }
        if self.reachability() == Reachability::Refused {
            return Err(unavailable("connection refused"));
        }
        Ok(())
    }

    pub(crate) fn check_denied(&self, table: &str, write: bool) -> Result<(), QueryError> {
        let serving = self.serving.read().unwrap_or_else(|e| e.into_inner());
        if serving.denied_tables.iter().any(|t| t == table) && (write || !serving.allow_reads) {
            return Err(QueryError::Denied {
                alias: self.alias_string.clone(),
                table: table.to_owned(),
            });
        }
        Ok(())
    }

    /// An upsert of `(pk, value)` into `table` as an application write through vtgate: denied
    /// tables are enforced, the write waits behind `LOCK TABLES`, and it commits one
    /// transaction. Returns the committed GTID sequence.
    pub(crate) async fn execute_write(
        &self,
        table: &str,
        pk: i64,
        value: &str,
    ) -> Result<u64, QueryError> {
        self.execute_write_in(table, pk, value, Transaction::default())
            .await
    }

    /// [`TabletCore::execute_write`] as a multi-statement transaction of the given shape:
    /// `begin; <rule check> <pause> upsert; <idle> commit`. As in vttablet, the denied-tables
    /// rule is checked per statement and `commit` checks nothing, so a transaction that wrote
    /// a table before its denial commits after it. From the upsert to the commit the
    /// transaction holds the table's metadata lock, so `LOCK TABLES ... READ` waits for it.
    pub(crate) async fn execute_write_in(
        &self,
        table: &str,
        pk: i64,
        value: &str,
        shape: Transaction,
    ) -> Result<u64, QueryError> {
        self.check_reachable_for_query()?;
        if self.reachability() == Reachability::Hang {
            self.wait_while_hanging().await;
            self.check_reachable_for_query()?;
        }
        if self.tablet_type != TabletType::Primary {
            return Err(QueryError::ReadOnly {
                alias: self.alias_string.clone(),
            });
        }
        // The denied-tables check happens before the write waits for its table, as in vttablet:
        // a write that passed the check just before the rules changed can still commit. That
        // is the race the cutover's `LOCK TABLES ... READ` flush exists for.
        self.check_denied(table, true)?;
        if !shape.before_write.is_zero() {
            tokio::time::sleep(shape.before_write).await;
        }
        let _permit = self.mysqld.write_permit(table).await;
        // A roll while waiting behind LOCK TABLES kills the connection.
        self.check_reachable_for_query()?;
        if !shape.before_commit.is_zero() {
            // Idle in an open transaction, holding the metadata lock; then commit, unchecked.
            tokio::time::sleep(shape.before_commit).await;
            self.check_reachable_for_query()?;
        }
        let mysql_err = |error| QueryError::Mysql {
            alias: self.alias_string.clone(),
            error,
        };
        let event = {
            let mut st = self.mysqld.lock();
            let Some(t) = st.tables.get(table) else {
                return Err(mysql_err(MysqlError::no_such_table(
                    self.mysqld.db_name(),
                    table,
                )));
            };
            let row = t.def.row_with(pk, value);
            let change = if t.rows.contains_key(&pk) {
                Change::Update {
                    table: table.to_owned(),
                    pk,
                    row,
                }
            } else {
                Change::Insert {
                    table: table.to_owned(),
                    pk,
                    row,
                }
            };
            self.mysqld
                .commit_locked(&mut st, vec![change])
                .map_err(mysql_err)?
        };
        self.mysqld.notify();
        Ok(event.seq)
    }

    /// A point read of `table` by primary key through vtgate.
    pub(crate) async fn execute_read(
        &self,
        table: &str,
        pk: i64,
    ) -> Result<Option<String>, QueryError> {
        self.check_reachable_for_query()?;
        if self.reachability() == Reachability::Hang {
            self.wait_while_hanging().await;
            self.check_reachable_for_query()?;
        }
        self.check_denied(table, false)?;
        let st = self.mysqld.lock();
        let t = st.tables.get(table).ok_or_else(|| QueryError::Mysql {
            alias: self.alias_string.clone(),
            error: MysqlError::no_such_table(self.mysqld.db_name(), table),
        })?;
        Ok(t.rows
            .get(&pk)
            .and_then(|r| t.def.value_of(r).map(str::to_owned)))
    }
}
