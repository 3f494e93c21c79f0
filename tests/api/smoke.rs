use crate::fixtures::*;
use crate::helpers::*;

#[tokio::test]
async fn a_signed_seed_is_accepted_and_its_retry_is_a_duplicate() {
    let app = spawn_app().await;
    let (status, body) = json(app.post_jodo(SEED_DROPPED).await).await;
    assert_eq!(
        (status, body["status"].as_str(), body["seq"].as_u64()),
        (200, Some("accepted"), Some(1))
    );
    let (status, body) = json(app.post_jodo(SEED_DROPPED).await).await;
    assert_eq!(
        (status, body["status"].as_str(), body["seq"].as_u64()),
        (200, Some("duplicate"), Some(1))
    );
    app.stop().await;
}
