//! The JSON types and query strings, round trips and refusals.

use super::*;

#[test]
fn ttl_takes_seconds_or_durations_within_bounds() {
    let ttl = |v: serde_json::Value| Ttl::try_from(v).map(Ttl::seconds);
    assert_eq!(ttl(serde_json::json!(60)), Ok(60));
    assert_eq!(ttl(serde_json::json!("7d")), Ok(7 * 86_400));
    assert!(ttl(serde_json::json!(0)).is_err());
    assert!(ttl(serde_json::json!("soon")).is_err());
    assert!(ttl(serde_json::json!(-5)).is_err());
    assert!(ttl(serde_json::json!(MAX_TTL_SECONDS + 1)).is_err());
    assert_eq!("3600".parse::<Ttl>().map(Ttl::seconds), Ok(3600));
    assert!("11y".parse::<Ttl>().is_err());
}

#[test]
fn top_query_parsing() {
    let q = |s: &str| TopQuery::from_query(s).map(|t| (t.window_seconds, t.limit));
    assert_eq!(q(""), Ok((3600, 20)));
    assert_eq!(q("window=24h&limit=5"), Ok((86_400, 5)));
    assert_eq!(q("window=90"), Ok((90, 20)));
    assert!(q("window=soon").unwrap_err().contains("window"));
    assert!(q("limit=0").unwrap_err().contains("limit"));
    assert!(q("sort=asc").unwrap_err().contains("unknown parameter"));
    let round = TopQuery {
        window_seconds: 7200,
        limit: 3,
    };
    assert_eq!(TopQuery::from_query(&round.to_query()), Ok(round));
}

#[test]
fn revoke_queries_round_trip_with_reserved_characters() {
    let request = RevokeRequest {
        prefix: "2001:db8::/64".into(),
        actor: "desk&co".into(),
        reason: "ticket #12 = done".into(),
        ..RevokeRequest::default()
    };
    assert_eq!(RevokeRequest::from_query(&request.to_query()), Ok(request));
    assert!(RevokeRequest::from_query("prefix=1.2.3.4&x=1").is_err());
    let by_name = RevokeRequest {
        subscriber: "alice+x@example.jp".into(),
        ..RevokeRequest::default()
    };
    let parsed = RevokeRequest::from_query(&by_name.to_query()).unwrap();
    assert_eq!(
        parsed.target(),
        Ok(GrantTarget::Subscriber("alice+x@example.jp"))
    );
}

#[test]
fn a_grant_names_exactly_one_of_prefix_and_subscriber() {
    let request = |body: &str| serde_json::from_str::<GrantRequest>(body).unwrap();
    assert_eq!(
        request(r#"{"subscriber": "alice@example.jp"}"#).target(),
        Ok(GrantTarget::Subscriber("alice@example.jp"))
    );
    assert_eq!(
        request(r#"{"prefix": "100.64.0.1"}"#).target(),
        Ok(GrantTarget::Prefix("100.64.0.1"))
    );
    assert!(request(r#"{"prefix": "100.64.0.1", "subscriber": "a"}"#)
        .target()
        .unwrap_err()
        .contains("not both"));
    assert!(request(r#"{"reason": "x"}"#)
        .target()
        .unwrap_err()
        .contains("prefix or subscriber"));
}

#[test]
fn grant_lists_keep_their_wire_form() {
    let answer = GrantListAnswer {
        list: GrantList::AllowedDestinations,
        grants: Vec::new(),
        subscribers: Vec::new(),
    };
    let text = serde_json::to_string(&answer).unwrap();
    assert_eq!(text, r#"{"allowed_destinations":[]}"#);
    assert_eq!(
        serde_json::from_str::<GrantListAnswer>(&text).unwrap(),
        answer
    );
    let with_subscribers = GrantListAnswer {
        list: GrantList::Exemptions,
        grants: Vec::new(),
        subscribers: vec![SubscriberGrant {
            subscriber: "alice@example.jp".into(),
            expires_at: None,
            reason: String::new(),
            actor: "api".into(),
            created_at: 1,
        }],
    };
    let text = serde_json::to_string(&with_subscribers).unwrap();
    assert!(text.contains(r#""exempt_subscribers":[{"subscriber":"alice@example.jp""#));
    assert_eq!(
        serde_json::from_str::<GrantListAnswer>(&text).unwrap(),
        with_subscribers
    );
}

#[test]
fn sessions_query_parsing() {
    let q = SessionsQuery::from_query;
    assert_eq!(q(""), Ok(SessionsQuery::default()));
    assert_eq!(
        q("subscriber=alice%40example.jp&limit=5"),
        Ok(SessionsQuery {
            filter: SessionFilter::Subscriber("alice@example.jp".into()),
            limit: 5
        })
    );
    assert_eq!(
        q("address=2001:db8::1").map(|s| s.filter),
        Ok(SessionFilter::Address("2001:db8::1".parse().unwrap()))
    );
    assert!(q("address=bob").unwrap_err().contains("address="));
    assert!(q("subscriber=a&address=100.64.0.1")
        .unwrap_err()
        .contains("not both"));
    assert!(q("limit=0").unwrap_err().contains("limit"));
    assert!(q("sort=1").unwrap_err().contains("unknown parameter"));
    let round = SessionsQuery {
        filter: SessionFilter::Subscriber("a b&c".into()),
        limit: 7,
    };
    assert_eq!(q(&round.to_query()), Ok(round));
}
