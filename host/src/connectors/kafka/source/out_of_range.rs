//! An offset out of range for its partition: where reading goes on, as
//! `on_out_of_range` says, or the one line the source fails with. Pure: the
//! consumer ([`KafkaSource`](super::KafkaSource)) reads the range and acts.

use super::config::OnOutOfRange;

/// The offset of `topic`'s `partition` where reading would go on is out
/// of `[low, high]`, the offsets a consumer may read from: where reading
/// goes on under `choice`, with the warning to log, or the one line the
/// source fails with. `restored`: the offset comes from a checkpoint or
/// savepoint, else reading had got to it.
pub(super) fn out_of_range(
    topic: &str,
    partition: i32,
    restored: bool,
    offset: i64,
    (low, high): (i64, i64),
    choice: OnOutOfRange,
) -> Result<(i64, String), String> {
    let what = if restored {
        format!("the restored offset {offset}")
    } else {
        format!("the next offset to read, {offset},")
    };
    let why = if offset < low {
        "records deleted by retention, or the topic was recreated"
    } else {
        "past the end: the topic was recreated, or its log truncated"
    };
    let found = format!(
        "Kafka topic `{topic}` partition {partition}: {what} is out of range [{low}, {high}) ({why})"
    );
    let (to, name) = match choice {
        OnOutOfRange::Earliest => (low, "earliest"),
        OnOutOfRange::Latest => (high, "latest"),
        OnOutOfRange::Fail => {
            return Err(format!(
                "{found}: set [source] on_out_of_range = \"earliest\" or \"latest\" to go on"
            ))
        }
    };
    Ok((
        to,
        format!("{found}; on_out_of_range = \"{name}\": reading on from offset {to}"),
    ))
}
