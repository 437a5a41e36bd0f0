//! Admin endpoints for notification channels, their test, and the outbox.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::views::{ChannelView, NotificationView};
use super::{ApiJson, ApiResult, Created};
use crate::error::Error;
use crate::hub::Hub;
use crate::notify::{self, ChannelSettings};
use crate::store::NotificationChannel;
use crate::tenancy::principals::Principal;

type Hub_ = State<Arc<Hub>>;

async fn find(hub: &Hub, who: &Principal, i: &str, id: &str) -> Result<NotificationChannel, Error> {
    let instance = who.instance(hub, i).await?;
    hub.store
        .channel(&instance.id, id)
        .await?
        .ok_or_else(|| Error::not_found(format!("there is no channel {id:?} in this instance")))
}

#[utoipa::path(get, path = "/api/v1/instances/{i}/notification-channels", tag = "notifications",
    params(("i" = String, Path, description = "Instance id or name")),
    responses((status = 200, description = "Channels, by name", body = Vec<ChannelView>),
              (status = 404, description = "No such instance")))]
pub async fn list_channels(
    State(hub): Hub_,
    who: Principal,
    Path(i): Path<String>,
) -> ApiResult<Json<Vec<ChannelView>>> {
    let instance = who.instance(&hub, &i).await?;
    let channels = hub.store.channels(&instance.id).await?;
    Ok(Json(
        channels.iter().map(|c| ChannelView::new(c, None)).collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/instances/{i}/notification-channels", tag = "notifications",
    request_body = ChannelSettings,
    params(("i" = String, Path, description = "Instance id or name")),
    responses((status = 201, description = "Created; a generated webhook secret is shown this once", body = ChannelView),
              (status = 400, description = "A field is invalid, or an instance-scoped token named a target the instance's policy refuses"),
              (status = 404, description = "No such instance"),
              (status = 409, description = "The name is taken")))]
pub async fn create_channel(
    State(hub): Hub_,
    who: Principal,
    Path(i): Path<String>,
    ApiJson(settings): ApiJson<ChannelSettings>,
) -> ApiResult<Created<ChannelView>> {
    let instance = who.instance(&hub, &i).await?;
    let hub_wide = who.require_admin().is_ok();
    let made = notify::create_channel(&hub, &who.actor(), &instance, &settings, hub_wide).await?;
    Ok(Created(ChannelView::new(&made.channel, made.secret)))
}

#[utoipa::path(get, path = "/api/v1/instances/{i}/notification-channels/{id}", tag = "notifications",
    params(("i" = String, Path, description = "Instance id or name"),
           ("id" = String, Path, description = "Channel id or name")),
    responses((status = 200, description = "The channel", body = ChannelView),
              (status = 404, description = "No such channel")))]
pub async fn show_channel(
    State(hub): Hub_,
    who: Principal,
    Path((i, id)): Path<(String, String)>,
) -> ApiResult<Json<ChannelView>> {
    Ok(Json(ChannelView::new(
        &find(&hub, &who, &i, &id).await?,
        None,
    )))
}

#[utoipa::path(delete, path = "/api/v1/instances/{i}/notification-channels/{id}", tag = "notifications",
    params(("i" = String, Path, description = "Instance id or name"),
           ("id" = String, Path, description = "Channel id or name")),
    responses((status = 204, description = "Deleted, with what was queued for it"),
              (status = 404, description = "No such channel")))]
pub async fn delete_channel(
    State(hub): Hub_,
    who: Principal,
    Path((i, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let c = find(&hub, &who, &i, &id).await?;
    notify::delete_channel(&hub, &who.actor(), &c).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/instances/{i}/notification-channels/{id}/test", tag = "notifications",
    params(("i" = String, Path, description = "Instance id or name"),
           ("id" = String, Path, description = "Channel id or name")),
    responses((status = 200, description = "`{delivered, detail}`: whether a sample notification got through, and if not why", body = Object),
              (status = 404, description = "No such channel")))]
pub async fn test_channel(
    State(hub): Hub_,
    who: Principal,
    Path((i, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let c = find(&hub, &who, &i, &id).await?;
    Ok(Json(match notify::test_channel(&hub, &c).await {
        Ok(()) => json!({"delivered": true, "detail": "the sample notification was delivered"}),
        Err(why) => json!({"delivered": false, "detail": why}),
    }))
}

#[utoipa::path(get, path = "/api/v1/instances/{i}/notifications", tag = "notifications",
    params(("i" = String, Path, description = "Instance id or name")),
    responses((status = 200, description = "The latest 200 notifications, newest first, with their delivery state", body = Vec<NotificationView>),
              (status = 404, description = "No such instance")))]
pub async fn list_notifications(
    State(hub): Hub_,
    who: Principal,
    Path(i): Path<String>,
) -> ApiResult<Json<Vec<NotificationView>>> {
    let instance = who.instance(&hub, &i).await?;
    let list = hub.store.notifications(&instance.id, 200).await?;
    Ok(Json(list.iter().map(NotificationView::new).collect()))
}
