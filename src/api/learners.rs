//! `/v1/learners` and `/v1/enrollments` (Toolzz).

use axum::extract::{Path, State};
use axum::Json;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::ErrorAnswer;
use crate::http::params::{
    enum_schema, paginate, rfc3339, schema_type, Cursor, Limit, Listing, NoParams, Page, Params,
    Text,
};
use crate::http::{ApiError, AppState};
use crate::projection::entities::{EnrollmentState, EnrollmentStatus};
use crate::projection::query::learners::{self, EnrollmentFilter};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_learner))
        .routes(routes!(list_enrollments))
}

#[derive(Serialize, ToSchema)]
#[schema(as = Certificate)]
pub struct CertificateView {
    /// When registrar received it (provider time).
    #[schema(format = DateTime)]
    pub issued_at: String,
    pub certified_at: Option<String>,
    /// 'participation' or 'achievement', as the provider sent it.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The provider's number, as text.
    pub approval_rate: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Enrollment)]
pub struct EnrollmentView {
    pub enrollment_id: String,
    pub course_id: String,
    pub course_name: Option<String>,
    pub user_id: String,
    pub institution_id: Option<String>,
    pub active: bool,
    #[schema(schema_with = enum_schema::<EnrollmentStatus>)]
    pub status: &'static str,
    /// The provider's text.
    pub date_expire: Option<String>,
    #[schema(format = DateTime)]
    pub enrolled_at: Option<String>,
    #[schema(format = DateTime)]
    pub completed_at: Option<String>,
    pub certificate: Option<CertificateView>,
}

fn enrollment_view(conn: &Connection, s: EnrollmentState) -> Result<EnrollmentView, ApiError> {
    let r = s.record;
    let certificate =
        learners::certificate(conn, &r.user_id, &r.course_id)?.map(|(at, c)| CertificateView {
            issued_at: rfc3339(at),
            certified_at: c.certified_at,
            kind: c.kind,
            approval_rate: c.approval_rate,
        });
    Ok(EnrollmentView {
        enrollment_id: r.enrollment_id,
        course_id: r.course_id,
        course_name: r.course_name,
        user_id: r.user_id,
        institution_id: r.institution_id,
        active: r.active,
        status: s.status.as_str(),
        date_expire: r.date_expire,
        enrolled_at: s.enrolled_at.map(rfc3339),
        completed_at: s.completed_at.map(rfc3339),
        certificate,
    })
}

schema_type!(
    /// The values of a [`EnrollmentStatus`].
    EnrollmentStatuses => enum_schema::<EnrollmentStatus>
);

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EnrollmentsQuery {
    /// Toolzz user id.
    #[param(inline, value_type = Option<Text>)]
    user_id: Option<String>,
    #[param(inline, value_type = Option<Text>)]
    course_id: Option<String>,
    #[param(inline, value_type = Option<EnrollmentStatuses>)]
    status: Option<EnrollmentStatus>,
    #[param(inline, value_type = Option<Limit>)]
    limit: Option<u32>,
    #[param(inline, value_type = Option<Cursor>)]
    cursor: Option<String>,
}

/// Toolzz enrollments
///
/// Ordered by enrollment id.
#[utoipa::path(get, path = "/v1/enrollments", tag = "learners",
    params(EnrollmentsQuery),
    responses(
        (status = 200, description = "A page of enrollments", body = Listing<EnrollmentView>),
        (status = 400, description = "A parameter is unknown or does not parse", body = ErrorAnswer),
    ))]
pub async fn list_enrollments(
    State(app): State<AppState>,
    Params(q): Params<EnrollmentsQuery>,
) -> Result<Json<Listing<EnrollmentView>>, ApiError> {
    let page = Page::new(q.limit, q.cursor.as_deref())?;
    let after = page.text_key()?;
    let filter = EnrollmentFilter {
        user_id: q.user_id,
        course_id: q.course_id,
        status: q.status,
    };
    app.projections(move |conn| {
        let rows = learners::enrollments(conn, &filter, after.as_deref(), page.limit + 1)?;
        paginate(
            rows,
            page.limit,
            |(id, _)| Value::from(id.clone()),
            |(_, s)| enrollment_view(conn, s),
        )
    })
    .await
    .map(Json)
}

#[derive(Serialize, ToSchema)]
#[schema(as = School)]
pub struct SchoolView {
    pub institution_id: String,
    pub school_id: String,
    pub role_id: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Learner)]
pub struct LearnerView {
    pub user_id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub cpf: Option<String>,
    pub nickname: Option<String>,
    pub uuid: Option<String>,
    pub phone: Option<String>,
    pub date_of_birth: Option<String>,
    /// Provider time of members.created, when received.
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    /// Provider time of the latest members.* event; null when the learner is
    /// known only from enrollments.
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
    pub schools: Vec<SchoolView>,
    pub enrollments: Vec<EnrollmentView>,
}

/// A learner's id in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Read by axum's `Path<String>`; this names it for the document.
struct UserId {
    /// Toolzz user id.
    #[param(min_length = 1, example = "987654321")]
    user_id: String,
}

/// A Toolzz learner
///
/// Profile, schools and enrollments. A user seen only in enrollment events
/// is shown with the name and e-mail those carried.
#[utoipa::path(get, path = "/v1/learners/{user_id}", tag = "learners",
    params(UserId),
    responses(
        (status = 200, description = "The learner", body = LearnerView),
        (status = 400, description = "A query parameter was given (none is taken)", body = ErrorAnswer),
        (status = 404, description = "No such learner", body = ErrorAnswer),
    ))]
pub async fn get_learner(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Params(NoParams {}): Params<NoParams>,
) -> Result<Json<LearnerView>, ApiError> {
    app.projections(move |conn| {
        let learner = learners::get(conn, &id)?;
        let states = learners::of_user(conn, &id)?;
        if learner.is_none() && states.is_empty() {
            return Err(ApiError::NotFound(format!("no learner has user id {id:?}")));
        }
        let fallback = states
            .iter()
            .max_by_key(|s| s.enrolled_at)
            .map(|s| (s.record.user_name.clone(), s.record.user_email.clone()));
        let enrollments = states
            .into_iter()
            .map(|s| enrollment_view(conn, s))
            .collect::<Result<Vec<_>, _>>()?;
        let view = match learner {
            Some(l) => {
                let p = l.profile;
                LearnerView {
                    user_id: p.user_id,
                    name: p.name,
                    email: p.email,
                    cpf: p.cpf,
                    nickname: p.nickname,
                    uuid: p.uuid,
                    phone: p.phone,
                    date_of_birth: p.date_of_birth,
                    created_at: l.created_at.map(rfc3339),
                    updated_at: Some(rfc3339(l.updated_at)),
                    schools: p
                        .schools
                        .into_iter()
                        .map(|s| SchoolView {
                            institution_id: s.institution_id,
                            school_id: s.school_id,
                            role_id: s.role_id,
                            created_at: s.created_at,
                            updated_at: s.updated_at,
                        })
                        .collect(),
                    enrollments,
                }
            }
            None => {
                let (name, email) = fallback.unwrap_or((None, None));
                LearnerView {
                    user_id: id,
                    name,
                    email,
                    cpf: None,
                    nickname: None,
                    uuid: None,
                    phone: None,
                    date_of_birth: None,
                    created_at: None,
                    updated_at: None,
                    schools: Vec::new(),
                    enrollments,
                }
            }
        };
        Ok(Json(view))
    })
    .await
}
