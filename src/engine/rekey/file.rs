//! One file of a rekey run: classify, and when needed rewrite it as a new version (intent in the
//! ledger first, stream, read back, commit); and settling a rewrite an earlier run left
//! unfinished.

use futures::StreamExt;
use mongodb::bson::doc;

use super::{Form, Rekey};
use crate::engine::{Counters, removal};
use crate::ledger::RekeyRecord;
use crate::storage::crypto::{TRAILER_LEN, recode, seal_stream};
use crate::storage::rekey::{Outcome, Version};
use crate::storage::{ByteStream, HashingStream, StorageError};

/// The form of `v`: which of the run's keys (tried in order) its tag verifies with, if any.
async fn classify(rk: &Rekey, v: &Version) -> Result<Form, StorageError> {
    let keys = rk.plan.keys();
    let refs: Vec<_> = keys.iter().map(|(k, _)| *k).collect();
    let stored = rk.store.open(v, 0).await?;
    let found = recode::which_key(&refs, &v.name, v.size, stored).await?;
    Ok(found.map_or(Form::Plain, |i| keys[i].1))
}

/// The plaintext of `v`, stored in `form` (decrypted as it streams; the tag is checked at the
/// end, and a mismatch ends the stream with an error).
async fn plaintext(rk: &Rekey, v: &Version, form: Form) -> Result<ByteStream, StorageError> {
    let Some(key) = rk.plan.key_of(form) else {
        return rk.store.open(v, 0).await;
    };
    let at = v
        .size
        .checked_sub(TRAILER_LEN as u64)
        .ok_or_else(|| StorageError::message(&v.name, false, "too short to be encrypted"))?;
    let trailer = recode::read_trailer(&v.name, rk.store.open(v, at).await?).await?;
    let stored = rk.store.open(v, 0).await?;
    Ok(recode::decrypt_stream(
        key, trailer, &v.name, v.size, stored,
    ))
}

/// Size and MD5 of the plaintext of `v`, whatever form of the run it is in.
async fn plain_md5(rk: &Rekey, v: &Version) -> Result<(u64, String), StorageError> {
    let form = classify(rk, v).await?;
    recode::md5_of(plaintext(rk, v, form).await?).await
}

/// Classify the version of `name` readers see, and rewrite it if the mode says so. `Err` only
/// for a ledger failure (the run stops); store failures are counted and recorded.
pub(super) async fn one(rk: &Rekey, name: String) -> anyhow::Result<()> {
    if rk.stopped().is_some() {
        return Ok(());
    }
    let v = match rk.store.current(&name).await {
        Ok(Some(v)) => v,
        Ok(None) => return Ok(()),
        Err(e) => {
            fail(rk, &name, e.to_string());
            return Ok(());
        }
    };
    Counters::add(&rk.counters().objects, 1);
    let form = match classify(rk, &v).await {
        Ok(f) => f,
        Err(e) => {
            fail(rk, &name, format!("reading it: {e}"));
            return Ok(());
        }
    };
    // Older versions nobody sees (Parse's own rotateEncryptionKey leaves them): old forms of
    // the file, so a rotation removes them too; a dry run counts them.
    let stale = if rk.plan.dry_run {
        rk.store.stale(&v).await
    } else {
        removal::remove_stale_versions(&*rk.store, &v).await
    };
    match stale {
        Ok(n) => rk.summary().stale_versions += n,
        Err(e) => fail(rk, &name, format!("removing older versions: {e}")),
    }
    let (target, source) = (rk.plan.target(), rk.plan.source());
    {
        let mut s = rk.summary();
        s.files_checked += 1;
        match form {
            Form::Plain if rk.plan.mode == super::RekeyMode::Rotate => {
                s.undecryptable.add(v.size);
                if s.undecryptable_names.len() < super::KEEP_ITEMS {
                    s.undecryptable_names.push(name.clone());
                }
                tracing::warn!(
                    file = ?name,
                    "neither key decrypts it (plaintext, another key, or corrupt): left as is"
                );
            }
            Form::Plain => s.plaintext.add(v.size),
            Form::Current => s.current_key.add(v.size),
            Form::New => s.new_key.add(v.size),
        }
        if form == target {
            s.already_done.add(v.size);
            Counters::add(&rk.counters().files_skipped, 1);
            return Ok(());
        }
        if form != source {
            return Ok(());
        }
        if rk.plan.dry_run {
            s.rewritten.add(v.size);
            return Ok(());
        }
    }
    if let Some(max) = rk.plan.limits.max_files {
        let n = rk.started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n >= max {
            let _ = rk.stop.set(format!("--max-files {max}"));
            return Ok(());
        }
    }
    if rk.stopped().is_some() {
        return Ok(());
    }
    rewrite(rk, v, form).await
}

fn fail(rk: &Rekey, name: &str, error: String) {
    tracing::warn!(file = ?name, "{error}");
    Counters::add(&rk.counters().files_failed, 1);
    rk.summary().fail(name, error);
}

/// Rewrite `v` (in `from`) into the target form, recorded in the ledger.
async fn rewrite(rk: &Rekey, v: Version, from: Form) -> anyhow::Result<()> {
    let target = rk.plan.target();
    let new_id = rk.store.new_id();
    let rec = rk
        .ledger
        .rekey_intent(
            &rk.store.identity(),
            &v.name,
            &v.id,
            &new_id,
            rk.plan.mode.as_str(),
            from.as_str(),
            target.as_str(),
        )
        .await?;
    Counters::add(&rk.counters().files_in_flight, 1);
    let result = write_verify_commit(rk, &v, from, &new_id).await;
    rk.counters()
        .files_in_flight
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    match result {
        Ok(Some((size, md5))) => {
            let extra = doc! {"size": size as i64, "md5": &md5};
            rk.ledger.rekey_outcome(rec, "done", extra).await?;
            Counters::add(&rk.counters().files_copied, 1);
            Counters::add(&rk.counters().bytes_copied, v.size);
            rk.summary().rewritten.add(v.size);
        }
        Ok(None) => {
            rk.ledger.rekey_outcome(rec, "superseded", doc! {}).await?;
            tracing::info!(
                file = ?v.name,
                "a newer version appeared while it was rewritten (Parse Server uploaded it): left it"
            );
            rk.summary().superseded += 1;
        }
        Err(Failed::Commit(e)) => {
            // The new version is verified and may already be the only one: never discard it.
            // The record stays `staged`; the next run settles it (commit, or find it done).
            fail(
                rk,
                &v.name,
                format!("replacing the old version: {e} (the next run finishes it)"),
            );
        }
        Err(Failed::Before(e)) => {
            if let Err(d) = removal::discard_version(&*rk.store, &v.name, &new_id).await {
                tracing::warn!("removing the unfinished new version of {}: {d}", v.name);
            }
            let error = e.to_string();
            rk.ledger
                .rekey_outcome(rec, "failed", doc! {"error": &error})
                .await?;
            fail(rk, &v.name, error);
        }
    }
    Ok(())
}

/// How a rewrite failed: before its new version was verified (nothing of it counts: it is
/// removed), or while the old version was being removed (the new one is verified and stays).
enum Failed {
    Before(StorageError),
    Commit(StorageError),
}

/// Stream `v` into a new version `new_id` in the target form and read it back (retried as a
/// copy is, each attempt from the first byte), then commit it. `None` when a newer version
/// appeared meanwhile (nothing of ours is left then).
async fn write_verify_commit(
    rk: &Rekey,
    v: &Version,
    from: Form,
    new_id: &str,
) -> Result<Option<(u64, String)>, Failed> {
    let staged = rk
        .plan
        .retry
        .run(&v.name, &rk.counters().retries, || {
            write_verify(rk, v, from, new_id)
        })
        .await
        .map_err(|g| Failed::Before(g.error))?;
    let Some((staged, size, md5)) = staged else {
        return Ok(None);
    };
    match removal::commit_version(&*rk.store, v, &staged)
        .await
        .map_err(Failed::Commit)?
    {
        Outcome::Done(_) => Ok(Some((size, md5))),
        Outcome::Superseded => Ok(None),
    }
}

/// One attempt: the new version written and read back; on any failure nothing of it is left.
async fn write_verify(
    rk: &Rekey,
    v: &Version,
    from: Form,
    new_id: &str,
) -> Result<Option<(Version, u64, String)>, StorageError> {
    let target = rk.plan.target();
    let (hashing, state) = HashingStream::new(plaintext(rk, v, from).await?);
    let stored = match rk.plan.key_of(target) {
        Some(key) => seal_stream(key, hashing.boxed()),
        None => hashing.boxed(),
    };
    let staged = match rk.store.stage(v, new_id, stored).await? {
        Outcome::Done(n) => n,
        Outcome::Superseded => return Ok(None),
    };
    let (size, md5) = {
        let st = state.lock().unwrap_or_else(|e| e.into_inner());
        (st.size, st.md5_hex())
    };
    let back = match plaintext(rk, &staged, target).await {
        Ok(stream) => recode::md5_of(stream).await,
        Err(e) => Err(e),
    };
    if back.as_ref().ok() != Some(&(size, md5.clone())) {
        removal::discard_version(&*rk.store, &v.name, new_id).await?;
        return Err(match back {
            Err(e) => e,
            Ok(back) => StorageError::Integrity {
                name: v.name.clone(),
                reason: format!(
                    "the new version reads back as {} bytes, MD5 {}; the original is {size} \
                     bytes, MD5 {md5}",
                    back.0, back.1
                ),
            },
        });
    }
    Ok(Some((staged, size, md5)))
}

/// Settle a rewrite an earlier run began and never recorded the end of: a new version that was
/// never completed is removed; a complete one whose plaintext equals the old one's replaces it
/// (the step the run did not get to); anything else is removed, leaving the old version.
pub(super) async fn settle(rk: &Rekey, r: &RekeyRecord) -> anyhow::Result<()> {
    let store = &rk.store;
    let found = async {
        let old = store.find(&r.name, &r.old).await?;
        let new = store.find(&r.name, &r.new).await?;
        let what = match (old, new) {
            (_, None) => {
                removal::discard_version(&**store, &r.name, &r.new).await?;
                "the new version was never completed: removed what was written of it"
            }
            (Some(old), Some(new)) => {
                if plain_md5(rk, &old).await? == plain_md5(rk, &new).await? {
                    match removal::commit_version(&**store, &old, &new).await? {
                        Outcome::Done(_) => "the new version was verified: committed it",
                        Outcome::Superseded => "a newer version appeared: removed ours",
                    }
                } else {
                    removal::discard_version(&**store, &r.name, &r.new).await?;
                    "the new version differs from the old one: removed it"
                }
            }
            (None, Some(new)) => {
                let current = store.current(&r.name).await?;
                if current.is_some_and(|c| c.id == new.id) {
                    // What removing the old version may have left (GridFS: its chunks).
                    removal::discard_version(&**store, &r.name, &r.old).await?;
                    "the rewrite had finished"
                } else {
                    removal::discard_version(&**store, &r.name, &r.new).await?;
                    "a newer version replaced the old one: removed ours"
                }
            }
        };
        Ok::<_, StorageError>(what)
    }
    .await;
    match found {
        Ok(what) => {
            tracing::info!(
                file = ?r.name,
                "settled an unfinished rewrite of an earlier run: {what}"
            );
            rk.ledger
                .rekey_outcome(r.id, "settled", doc! {"found": what})
                .await
        }
        Err(e) => {
            // Left `staged`: the next run tries again.
            fail(rk, &r.name, format!("settling an unfinished rewrite: {e}"));
            Ok(())
        }
    }
}
