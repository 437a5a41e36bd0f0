//! Leases on work that one process at a time may do: periodic jobs, and
//! the release of every lease at a single process's start. Owns the
//! `job_leases` table; never runs a job (that is `jobs`).

use super::{Result, Store, StoreError};

impl Store {
    /// Takes periodic job `job` for `owner` until `until`: true when no
    /// process holds it (its lease ended before `now`) and its last run
    /// finished before `due_before`. Of processes trying at once, one wins.
    pub async fn take_job(
        &self,
        job: &str,
        owner: &str,
        now: i64,
        until: i64,
        due_before: i64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "INSERT INTO job_leases (job, owner, lease_until, last_run) VALUES ($1, $2, $3, 0) \
             ON CONFLICT (job) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until \
             WHERE job_leases.lease_until < $4 AND job_leases.last_run < $5",
        )
        .bind(job)
        .bind(owner)
        .bind(until)
        .bind(now)
        .bind(due_before)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Records that `owner` finished a run of `job` at `now`, and gives the
    /// lease back (unless another process took it over meanwhile).
    pub async fn finish_job(&self, job: &str, owner: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE job_leases SET last_run = $1, lease_until = 0 WHERE job = $2 AND owner = $3",
        )
        .bind(now)
        .bind(job)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Drops every lease (relayed orders, managed certificates, periodic
    /// jobs): for a single-process store at start-up, when no worker of
    /// this process runs yet and no other process can hold one.
    pub async fn release_all_leases(&self) -> Result<()> {
        sqlx::query("UPDATE upstream_orders SET lease_until = 0 WHERE lease_until <> 0")
            .execute(&self.pool)
            .await?;
        sqlx::query("UPDATE managed_certificates SET lease_until = 0 WHERE lease_until <> 0")
            .execute(&self.pool)
            .await?;
        sqlx::query("UPDATE job_leases SET lease_until = 0 WHERE lease_until <> 0")
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
