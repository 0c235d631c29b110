//! `Microsoft.Authorization` (2022-04-01) through an official `azure_core` ARM pipeline: role
//! assignments at a subscription, group and resource with the documented `$filter` rule, role
//! definitions (built-in and custom) and the caller's effective permissions.

use azure_core::http::{Method, RawResponse};
use serde_json::{Value, json};

use crate::helpers::{RESOURCE_GROUP, SUBSCRIPTION, TestEmulator, http_error, spawn_emulator};

const API: &str = "2022-04-01";
const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
const SECRETS_OFFICER: &str = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7";
const COGNITIVE_CONTRIBUTOR: &str = "25fbc0a9-bd7c-42a3-aa1a-3b75d497ee68";
const ROTATOR: &str = "0c1a9d36-7a5e-4f57-9a0e-6d1f3b2c4e5f";
const OTHER: &str = "00000000-0000-0000-0000-0000000000aa";

fn sub() -> String {
    format!("/subscriptions/{SUBSCRIPTION}")
}
fn rg() -> String {
    format!("{}/resourceGroups/{RESOURCE_GROUP}", sub())
}
fn account() -> String {
    format!("{}/providers/Microsoft.CognitiveServices/accounts/acct-1", rg())
}

fn body_json(response: &RawResponse) -> Value {
    serde_json::from_slice(response.body()).expect("JSON body")
}

async fn get(app: &TestEmulator, path_and_query: &str) -> Value {
    body_json(&app.arm(Method::Get, path_and_query, None).await.unwrap())
}

/// Seeds, for the caller (the system identity): Reader on the subscription, Secrets Officer on
/// the group, the custom rotator role on one account; for another principal: Cognitive
/// Services Contributor on the group.
async fn seeded() -> (TestEmulator, String) {
    let app = spawn_emulator().await;
    let me = app.info.system_identity.principal_id.clone();
    app.seed(json!({
        "role_definitions": [{
            "id": ROTATOR, "role_name": "keyflip key rotator", "description": "rotates keys",
            "actions": ["Microsoft.CognitiveServices/accounts/read",
                        "Microsoft.CognitiveServices/accounts/listKeys/action",
                        "Microsoft.CognitiveServices/accounts/regenerateKey/action"],
            "assignable_scopes": [sub()]
        }],
        "role_assignments": [
            { "id": "a0000000-0000-0000-0000-000000000001", "principal_id": me, "role_definition_id": READER, "scope": sub() },
            { "id": "a0000000-0000-0000-0000-000000000002", "principal_id": me,
              "role_definition_id": format!("{}/providers/Microsoft.Authorization/roleDefinitions/{SECRETS_OFFICER}", sub()),
              "scope": rg() },
            { "id": "a0000000-0000-0000-0000-000000000003", "principal_id": me, "role_definition_id": ROTATOR, "scope": account() },
            { "id": "a0000000-0000-0000-0000-000000000004", "principal_id": OTHER, "role_definition_id": COGNITIVE_CONTRIBUTOR,
              "scope": rg(), "principal_type": "User" }
        ]
    }))
    .await;
    (app, me)
}

fn assignment_ids(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap()[35..].to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_principal_filter_lists_its_assignments_at_above_and_below_the_scope() {
    // Arrange
    let (app, me) = seeded().await;
    let path = |filter: &str| {
        format!(
            "{}/providers/Microsoft.Authorization/roleAssignments?api-version={API}&$filter={}",
            rg(),
            url_escape(filter)
        )
    };

    // Act
    let by_principal = get(&app, &path(&format!("principalId eq '{me}'"))).await;
    let assigned_to = get(&app, &path(&format!("assignedTo('{me}')"))).await;
    let at_scope = get(&app, &path("atScope()")).await;
    let mine_at_scope = get(&app, &path(&format!("atScope() and assignedTo('{me}')"))).await;
    let unfiltered = get(
        &app,
        &format!(
            "{}/providers/Microsoft.Authorization/roleAssignments?api-version={API}",
            rg()
        ),
    )
    .await;

    // Assert
    assert_eq!(
        assignment_ids(&by_principal),
        ["1", "2", "3"],
        "above, at and below"
    );
    assert_eq!(assignment_ids(&assigned_to), ["1", "2", "3"]);
    assert_eq!(
        assignment_ids(&at_scope),
        ["1", "2", "4"],
        "at or above, anyone's"
    );
    assert_eq!(assignment_ids(&mine_at_scope), ["1", "2"]);
    assert_eq!(assignment_ids(&unfiltered), ["1", "2", "3", "4"]);
    let officer = by_principal["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "a0000000-0000-0000-0000-000000000002")
        .unwrap();
    assert_eq!(
        officer["id"],
        format!(
            "{}/providers/Microsoft.Authorization/roleAssignments/a0000000-0000-0000-0000-000000000002",
            rg()
        )
    );
    assert_eq!(officer["type"], "Microsoft.Authorization/roleAssignments");
    assert_eq!(
        officer["properties"]["roleDefinitionId"],
        format!(
            "{}/providers/Microsoft.Authorization/roleDefinitions/{SECRETS_OFFICER}",
            sub()
        )
    );
    assert_eq!(officer["properties"]["principalId"], me.as_str());
    assert_eq!(officer["properties"]["principalType"], "ServicePrincipal");
    assert_eq!(officer["properties"]["scope"], rg());
    let calls = app
        .control
        .calls(Some("RoleAssignments_ListForResourceGroup"))
        .await
        .unwrap();
    assert_eq!(calls.len(), 5);
}

#[tokio::test]
async fn assignments_are_listed_at_a_resource_and_read_one_by_one() {
    // Arrange
    let (app, me) = seeded().await;

    // Act
    let at_account = get(
        &app,
        &format!(
            "{}/providers/Microsoft.Authorization/roleAssignments?api-version={API}&$filter=atScope()",
            account()
        ),
    )
    .await;
    let one = get(
        &app,
        &format!("{}/providers/Microsoft.Authorization/roleAssignments/a0000000-0000-0000-0000-000000000003?api-version={API}", account()),
    )
    .await;
    let elsewhere = app
        .arm(
            Method::Get,
            &format!("{}/providers/Microsoft.Authorization/roleAssignments/a0000000-0000-0000-0000-000000000003?api-version={API}", rg()),
            None,
        )
        .await
        .unwrap_err();
    let bad_filter = app
        .arm(
            Method::Get,
            &format!("{}/providers/Microsoft.Authorization/roleAssignments?api-version={API}&$filter=roleDefinitionId%20eq%20'x'", rg()),
            None,
        )
        .await
        .unwrap_err();

    // Assert
    assert_eq!(assignment_ids(&at_account), ["1", "2", "3", "4"]);
    assert_eq!(one["properties"]["principalId"], me.as_str());
    assert_eq!(
        http_error(&elsewhere),
        (404, Some("RoleAssignmentNotFound".into()))
    );
    assert_eq!(http_error(&bad_filter), (400, Some("UnsupportedQuery".into())));
    let calls = app
        .control
        .calls(Some("RoleAssignments_ListForResource"))
        .await
        .unwrap();
    assert_eq!(calls[0].target, account());
}

#[tokio::test]
async fn role_definitions_are_read_at_any_scope_built_in_and_custom() {
    // Arrange
    let (app, _) = seeded().await;

    // Act
    let officer = get(
        &app,
        &format!(
            "{}/providers/Microsoft.Authorization/roleDefinitions/{SECRETS_OFFICER}?api-version={API}",
            rg()
        ),
    )
    .await;
    let rotator = get(
        &app,
        &format!(
            "{}/providers/Microsoft.Authorization/roleDefinitions/{ROTATOR}?api-version={API}",
            account()
        ),
    )
    .await;
    let by_name = get(
        &app,
        &format!(
            "{}/providers/Microsoft.Authorization/roleDefinitions?api-version={API}&$filter={}",
            sub(),
            url_escape("roleName eq 'Cognitive Services User'")
        ),
    )
    .await;
    let custom_only = get(
        &app,
        &format!(
            "{}/providers/Microsoft.Authorization/roleDefinitions?api-version={API}&$filter={}",
            sub(),
            url_escape("type eq 'CustomRole'")
        ),
    )
    .await;
    let unknown = app
        .arm(
            Method::Get,
            &format!("{}/providers/Microsoft.Authorization/roleDefinitions/99999999-0000-0000-0000-000000000000?api-version={API}", sub()),
            None,
        )
        .await
        .unwrap_err();

    // Assert
    assert_eq!(
        officer["id"],
        format!(
            "{}/providers/Microsoft.Authorization/roleDefinitions/{SECRETS_OFFICER}",
            sub()
        )
    );
    assert_eq!(officer["name"], SECRETS_OFFICER);
    assert_eq!(officer["type"], "Microsoft.Authorization/roleDefinitions");
    assert_eq!(officer["properties"]["roleName"], "Key Vault Secrets Officer");
    assert_eq!(officer["properties"]["type"], "BuiltInRole");
    assert_eq!(officer["properties"]["assignableScopes"], json!(["/"]));
    assert_eq!(
        officer["properties"]["permissions"][0]["dataActions"],
        json!(["Microsoft.KeyVault/vaults/secrets/*"])
    );
    assert_eq!(rotator["properties"]["type"], "CustomRole");
    assert_eq!(rotator["properties"]["assignableScopes"], json!([sub()]));
    assert_eq!(
        rotator["properties"]["permissions"][0]["actions"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let names: Vec<&str> = by_name["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a97b65f3-24c7-4388-baec-2e87135dc908"]);
    assert_eq!(custom_only["value"].as_array().unwrap().len(), 1);
    assert_eq!(
        http_error(&unknown),
        (404, Some("RoleDefinitionDoesNotExist".into()))
    );
}

#[tokio::test]
async fn permissions_count_the_callers_assignments_above_the_scope_but_not_below_it() {
    // Arrange
    let (app, _) = seeded().await;

    // Act
    let at_sub = get(
        &app,
        &format!(
            "{}/providers/Microsoft.Authorization/permissions?api-version={API}",
            sub()
        ),
    )
    .await;
    let at_rg = get(
        &app,
        &format!(
            "{}/providers/Microsoft.Authorization/permissions?api-version={API}",
            rg()
        ),
    )
    .await;
    let at_account = get(
        &app,
        &format!(
            "{}/providers/Microsoft.Authorization/permissions?api-version={API}",
            account()
        ),
    )
    .await;

    // Assert
    let actions = |page: &Value| -> Vec<Value> {
        page["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["actions"].clone())
            .collect()
    };
    assert_eq!(
        at_sub["value"],
        json!([{"actions": ["*/read"], "notActions": [], "dataActions": [], "notDataActions": []}]),
        "the group's and the account's assignments are below the subscription"
    );
    assert_eq!(
        at_rg["value"].as_array().unwrap().len(),
        2,
        "Reader from above, Secrets Officer at"
    );
    assert_eq!(
        at_rg["value"][1]["dataActions"],
        json!(["Microsoft.KeyVault/vaults/secrets/*"])
    );
    let account_actions = actions(&at_account);
    assert_eq!(account_actions.len(), 3);
    assert!(account_actions[2].as_array().unwrap().contains(&json!(
        "Microsoft.CognitiveServices/accounts/regenerateKey/action"
    )));
    assert!(
        !at_rg.to_string().contains("Microsoft.CognitiveServices/*"),
        "another principal's roles are not the caller's"
    );
    for (operation, n) in [
        ("Permissions_ListForSubscription", 1),
        ("Permissions_ListForResourceGroup", 1),
        ("Permissions_ListForResource", 1),
    ] {
        assert_eq!(
            app.control.calls(Some(operation)).await.unwrap().len(),
            n,
            "{operation}"
        );
    }
}

#[tokio::test]
async fn an_assignment_of_an_unknown_role_or_outside_its_assignable_scopes_is_refused() {
    // Arrange
    let app = spawn_emulator().await;
    let role = json!({ "id": ROTATOR, "role_name": "rg-only", "assignable_scopes": [rg()] });

    // Act
    let outside = app
        .control
        .seed(&json!({ "role_definitions": [role], "role_assignments": [
            { "principal_id": "p", "role_definition_id": ROTATOR, "scope": sub() }] }))
        .await
        .unwrap_err()
        .to_string();
    let unknown = app
        .control
        .seed(&json!({ "role_assignments": [
            { "principal_id": "p", "role_definition_id": "99999999-0000-0000-0000-000000000000", "scope": sub() }] }))
        .await
        .unwrap_err()
        .to_string();

    // Assert
    assert!(outside.contains("may be assigned only at or under"), "{outside}");
    assert!(unknown.contains("neither a built-in role"), "{unknown}");
}

/// Percent-encodes a query value (spaces, quotes, parentheses).
fn url_escape(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
